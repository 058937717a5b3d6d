#!/bin/sh
# SPDX-License-Identifier: MIT
#
# gen-fixtures.sh OUTDIR: generate the certificate fixtures of the TLS tests
# with the openssl command, at test time (no binary fixture is committed).
# A test PKI (EC root -> EC intermediate -> leaves) plus one file per
# failure the loader must diagnose: self-signed CN=localhost, expired, not
# yet valid, wrong host name, mismatched key, world-readable key, encrypted
# keys, garbage, corrupt PEM, empty, DER, chains out of order or missing the
# intermediate, a certificate expiring in 5 days, an SNI pair and a client
# certificate. Every private key is written with mode 0600 except the one
# that must be world-readable. Prints nothing on success.
set -eu

out=${1:?usage: gen-fixtures.sh OUTDIR}
OPENSSL=${OPENSSL:-openssl}
mkdir -p "$out"
cd "$out"
umask 077
rm -rf ca && mkdir ca ca/newcerts && : > ca/index.txt && echo 1000 > ca/serial

# ca.cnf reads the subjectAltName of a leaf from $SAN.
SAN=DNS:unused
export SAN

o() { "$OPENSSL" "$@" 2>/dev/null || { echo "openssl $* failed" >&2; "$OPENSSL" "$@"; }; }

cat > ca/ca.cnf <<'CNF'
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca ]
default_ca = ca_default
[ ca_default ]
dir = ca
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
[ policy_any ]
commonName = supplied
[ v3_root ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ v3_inter ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ v3_leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $ENV::SAN
CNF

eckey() { o genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
rsakey() { o genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

# leaf KEY CN SAN DAYS OUT [ISSUER]: a leaf signed by the intermediate.
leaf() {
  SAN=$3 o req -new -config ca/ca.cnf -key "$1" -subj "/CN=$2" -out ca/leaf.csr
  SAN=$3 o x509 -req -in ca/leaf.csr -CA "${6:-inter}.pem" -CAkey "${6:-inter}.key" \
    -set_serial "0x$(o rand -hex 8)" -days "$4" -sha256 \
    -extfile ca/ca.cnf -extensions v3_leaf -out "$5"
}
# dated KEY CN SAN START END OUT: a leaf with explicit validity dates.
dated() {
  SAN=$3 o req -new -config ca/ca.cnf -key "$1" -subj "/CN=$2" -out ca/leaf.csr
  SAN=$3 o ca -batch -config ca/ca.cnf -notext -cert inter.pem -keyfile inter.key \
    -startdate "$4" -enddate "$5" -extensions v3_leaf -in ca/leaf.csr -out "$6"
}

# --- the test PKI ----------------------------------------------------------
eckey root.key
o req -x509 -new -config ca/ca.cnf -key root.key -subj "/CN=MXGW Test Root CA" \
  -days 3650 -sha256 -extensions v3_root -out root.pem
eckey inter.key
o req -new -config ca/ca.cnf -key inter.key -subj "/CN=MXGW Test Intermediate CA" -out ca/inter.csr
o x509 -req -in ca/inter.csr -CA root.pem -CAkey root.key -set_serial 0x2000 \
  -days 3650 -sha256 -extfile ca/ca.cnf -extensions v3_inter -out inter.pem

# a hashed CA directory (MXGW_TLS_CA_PATH) holding the root
rm -rf capath && mkdir capath && cp root.pem capath/root.pem
o rehash capath

# --- good pairs ------------------------------------------------------------
rsakey rsa.key
leaf rsa.key mx.example.test "DNS:mx.example.test,DNS:smtp.example.test" 400 rsa.pem
cat rsa.pem inter.pem > rsa-fullchain.pem
eckey ec.key
leaf ec.key mx.example.test "DNS:mx.example.test,DNS:smtp.example.test" 400 ec.pem
cat ec.pem inter.pem > ec-fullchain.pem
# the "renewed" certificate for the reload tests: new key, same name
eckey renewed.key
leaf renewed.key mx.example.test "DNS:mx.example.test" 90 renewed.pem
cat renewed.pem inter.pem > renewed-fullchain.pem
# a second name and a wildcard, for SNI
eckey other.key
leaf other.key mx.other.test "DNS:mx.other.test" 400 other.pem
cat other.pem inter.pem > other-fullchain.pem
eckey wild.key
leaf wild.key "*.wild.test" "DNS:*.wild.test" 400 wild.pem
cat wild.pem inter.pem > wild-fullchain.pem
# certificate and key in one file
cat rsa-fullchain.pem rsa.key > combined.pem
# a client certificate
eckey client.key
leaf client.key client.example.test "DNS:client.example.test" 400 client.pem
cat client.pem inter.pem > client-fullchain.pem

# --- bad ones ----------------------------------------------------------------
# the deployment's self-signed certificate
eckey localhost.key
o req -x509 -new -config ca/ca.cnf -key localhost.key -subj "/CN=localhost" \
  -days 3650 -sha256 -addext "subjectAltName=DNS:localhost" -out localhost.pem
# expired, not yet valid
dated ec.key mx.example.test "DNS:mx.example.test" 20200101000000Z 20210101000000Z expired.pem
cat expired.pem inter.pem > expired-fullchain.pem
start=$(date -u -d '+10 days' +%Y%m%d%H%M%SZ)
end=$(date -u -d '+400 days' +%Y%m%d%H%M%SZ)
dated ec.key mx.example.test "DNS:mx.example.test" "$start" "$end" future.pem
cat future.pem inter.pem > future-fullchain.pem
# expiring in 5 days
leaf ec.key mx.example.test "DNS:mx.example.test" 5 expiring.pem
cat expiring.pem inter.pem > expiring-fullchain.pem
# a valid certificate for some other host
leaf ec.key wrong.example.net "DNS:wrong.example.net" 400 wronghost.pem
cat wronghost.pem inter.pem > wronghost-fullchain.pem
# a key that does not belong to rsa.pem
rsakey mismatch.key
# rsa.key, world-readable
cp rsa.key world.key
chmod 644 world.key
chmod 640 rsa.key && cp rsa.key group.key && chmod 600 rsa.key
# encrypted keys: PKCS#8 and the traditional "Proc-Type: 4,ENCRYPTED" form
o pkey -in rsa.key -aes256 -passout pass:correct-horse -out encrypted.key
o rsa -in rsa.key -aes256 -traditional -passout pass:correct-horse -out encrypted-legacy.key
# garbage, a corrupt PEM block, empty
printf 'This is not a certificate.\nJust some text.\n' > garbage.pem
printf -- '-----BEGIN CERTIFICATE-----\nnot*base64*at*all\n-----END CERTIFICATE-----\n' > corrupt.pem
printf -- '-----BEGIN CERTIFICATE-----\nMIIB\n' > truncated.pem
: > empty.pem
# DER
o x509 -in rsa.pem -outform der -out rsa.der
o pkey -in rsa.key -outform der -out rsa-key.der
# chains: out of order, missing the intermediate
cat inter.pem rsa.pem > leaf-second.pem
cat rsa.pem root.pem inter.pem > reversed-chain.pem
cp rsa.pem leaf-only.pem
# a PKI-less CSR where a certificate is expected
cp ca/leaf.csr request.pem

chmod 755 capath
chmod 644 ./*.pem ./*.der capath/*
chmod 600 ./*.key rsa-key.der combined.pem
chmod 644 world.key
chmod 640 group.key
