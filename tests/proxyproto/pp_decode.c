/* SPDX-License-Identifier: MIT */
/*
 * pp_decode.c: a test helper for tests/proxyproto/test_haproxy.py. Reads
 * the bytes a proxy sent (the start of a connection) from stdin, runs
 * mxgw_proxyproto_parse_ex() over them and prints what it decoded, one
 * key=value per line:
 *
 *   rc=<return>  need=<need>  why=<reason, errors only>
 *   version= command=proxy|local family=inet|inet6|unix|unspec
 *   src= sport= dst= dport=
 *   rest=<bytes after the header>
 *   tlv.<type>=<hex value>     for each --tlv <type> that is present
 *
 * Exit status: 0 complete header, 1 incomplete, 2 error, 3 usage.
 */
#include <mxgw/mxgw_proxyproto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *family_name(int f) {
  switch (f) {
  case AF_INET:
    return "inet";
  case AF_INET6:
    return "inet6";
  case AF_UNIX:
    return "unix";
  case AF_UNSPEC:
    return "unspec";
  default:
    return "?";
  }
}

int main(int argc, char **argv) {
  static unsigned char buf[MXGW_PROXY_V2_MAX_LEN + 4096];
  size_t len = 0, n;
  while ((n = fread(buf + len, 1, sizeof buf - len, stdin)) > 0)
    len += n;

  mxgw_proxy_hdr h;
  size_t need = 0;
  const char *why = NULL;
  int rc = mxgw_proxyproto_parse_ex(buf, len, &h, &need, &why);
  printf("rc=%d\nneed=%zu\n", rc, need);
  if (rc < 0) {
    printf("why=%s\n", why ? why : "");
    return 2;
  }
  if (rc == 0)
    return 1;
  printf("version=%d\ncommand=%s\nfamily=%s\n", h.version,
         h.command == MXGW_PROXY_CMD_PROXY ? "proxy" : "local",
         family_name(h.family));
  printf("src=%s\nsport=%u\ndst=%s\ndport=%u\n", h.src_addr,
         (unsigned)h.src_port, h.dst_addr, (unsigned)h.dst_port);
  printf("rest=%zu\n", len - (size_t)rc);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--tlv") != 0 || i + 1 >= argc) {
      fprintf(stderr, "usage: pp-decode [--tlv TYPE]... < bytes\n");
      return 3;
    }
    int type = (int)strtol(argv[++i], NULL, 0);
    const void *v;
    size_t vl;
    int t = mxgw_proxyproto_tlv(buf, len, type, &v, &vl);
    if (t < 0) {
      printf("tlv_error=%d\n", t);
      return 2;
    }
    if (t == 1) {
      printf("tlv.%d=", type);
      for (size_t k = 0; k < vl; k++)
        printf("%02x", ((const unsigned char *)v)[k]);
      printf("\n");
    }
  }
  return 0;
}
