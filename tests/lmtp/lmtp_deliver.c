/* SPDX-License-Identifier: MIT */
/*
 * lmtp_deliver.c: a small command-line front end to the LMTP client driver,
 * used by the Python tests in this directory. It delivers one file (or the
 * same file --repeat times over one connection) to a backend and prints one
 * line per recipient per message:
 *   msg=N rcpt=<addr> code=250 enh=2.0.0 stage=5 local=0 text=...
 * plus "conn ext=... tls=... messages=..." at the end. Exit status 0 when
 * the driver returned MXGW_OK (whatever the results), 1 otherwise.
 */
#include <mxgw/mxgw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
  fprintf(stderr,
          "usage: lmtp_deliver --target T --from F --rcpt R [--rcpt R...] "
          "--file PATH [--repeat N] [--max-messages N] [--xclient-addr A] "
          "[--xclient-helo H] [--xclient-name N] [--starttls 1|2 --ca FILE "
          "--servername NAME] [--chunking] [--chunk-size N] [--8bit] "
          "[--smtputf8] [--timeout-ms N] [--notify BITS --orcpt X] "
          "[--envid X --ret 1|2]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *target = NULL, *from = NULL, *file = NULL, *ca = NULL;
  const char *rcpts[64];
  int nr = 0, repeat = 1, starttls = 0, chunking = 0, eightbit = 0, utf8 = 0;
  int notify = 0, ret = 0;
  long long chunk = 0, timeout = 0, maxmsg = 0;
  const char *xaddr = NULL, *xhelo = NULL, *xname = NULL, *servername = NULL;
  const char *orcpt = NULL, *envid = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && ++i)
    if (OPT("--target")) target = v;
    else if (OPT("--from")) from = v;
    else if (OPT("--rcpt") && nr < 64) rcpts[nr++] = v;
    else if (OPT("--file")) file = v;
    else if (OPT("--repeat")) repeat = atoi(v);
    else if (OPT("--max-messages")) maxmsg = atoll(v);
    else if (OPT("--xclient-addr")) xaddr = v;
    else if (OPT("--xclient-helo")) xhelo = v;
    else if (OPT("--xclient-name")) xname = v;
    else if (OPT("--starttls")) starttls = atoi(v);
    else if (OPT("--ca")) ca = v;
    else if (OPT("--servername")) servername = v;
    else if (OPT("--chunk-size")) chunk = atoll(v);
    else if (OPT("--timeout-ms")) timeout = atoll(v);
    else if (OPT("--notify")) notify = atoi(v);
    else if (OPT("--orcpt")) orcpt = v;
    else if (OPT("--envid")) envid = v;
    else if (OPT("--ret")) ret = atoi(v);
    else if (strcmp(a, "--chunking") == 0) chunking = 1;
    else if (strcmp(a, "--8bit") == 0) eightbit = 1;
    else if (strcmp(a, "--smtputf8") == 0) utf8 = 1;
    else usage();
#undef OPT
  }
  if (!target || !from || !file || nr == 0)
    usage();
  mxgw_lmtp_config *cfg;
  mxgw_tls *tls = NULL;
  if (mxgw_lmtp_config_new(&cfg, NULL))
    return 1;
  mxgw_lmtp_config_set_str(cfg, MXGW_LMTP_OPT_LHLO_NAME, "gw.example.test");
  if (chunking)
    mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_CHUNKING, 1);
  if (chunk)
    mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_CHUNK_SIZE, chunk);
  if (maxmsg)
    mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_MAX_MESSAGES, maxmsg);
  if (timeout) {
    mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_COMMAND_TIMEOUT_MS, timeout);
    mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_DATA_TIMEOUT_MS, timeout);
    mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_CONNECT_TIMEOUT_MS, timeout);
  }
  if (starttls) {
    if (mxgw_tls_new(&tls, MXGW_TLS_CLIENT, NULL) ||
        (ca && mxgw_tls_set_str(tls, MXGW_TLS_CA_FILE, ca)) ||
        mxgw_tls_reload(tls)) {
      fprintf(stderr, "tls: %s\n", tls ? mxgw_tls_errmsg(tls) : "new");
      return 1;
    }
    mxgw_lmtp_config_set_tls(cfg, tls);
    mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_STARTTLS, starttls);
    if (servername)
      mxgw_lmtp_config_set_str(cfg, MXGW_LMTP_OPT_TLS_SERVERNAME, servername);
  }
  mxgw_lmtp_conn *conn;
  if (mxgw_lmtp_conn_new(&conn, cfg, target, NULL)) {
    fprintf(stderr, "bad target %s\n", target);
    return 1;
  }
  int status = 0;
  for (int m = 0; m < repeat; m++) {
    mxgw_lmtp *c = mxgw_lmtp_conn_client(conn);
    int rv = mxgw_lmtp_msg_new(c, from);
    if (!rv && eightbit)
      rv = mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_8BITMIME, 1);
    if (!rv && utf8)
      rv = mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_SMTPUTF8, 1);
    if (!rv && ret)
      rv = mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_RET, ret);
    if (!rv && envid)
      rv = mxgw_lmtp_msg_set_str(c, MXGW_LMTP_MSG_ENVID, envid);
    if (!rv && xaddr)
      rv = mxgw_lmtp_msg_set_str(c, MXGW_LMTP_MSG_XCLIENT_ADDR, xaddr);
    if (!rv && xhelo)
      rv = mxgw_lmtp_msg_set_str(c, MXGW_LMTP_MSG_XCLIENT_HELO, xhelo);
    if (!rv && xname)
      rv = mxgw_lmtp_msg_set_str(c, MXGW_LMTP_MSG_XCLIENT_NAME, xname);
    FILE *f = fopen(file, "rb");
    if (f) {
      fseek(f, 0, SEEK_END);
      mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_SIZE, ftell(f));
      fclose(f);
    }
    for (int i = 0; !rv && i < nr; i++)
      rv = mxgw_lmtp_msg_add_rcpt(c, rcpts[i], notify, orcpt) < 0;
    if (rv) {
      fprintf(stderr, "message setup failed: %d\n", rv);
      return 1;
    }
    rv = mxgw_lmtp_conn_deliver_file(conn, file);
    if (rv) {
      fprintf(stderr, "deliver: %s\n", mxgw_strerror(rv));
      status = 1;
    }
    for (int i = 0; i < nr; i++) {
      int64_t code = 0, stage = 0, local = 0;
      const char *enh = "", *text = "";
      size_t el = 0, tl = 0;
      mxgw_lmtp_rcpt_get_int(c, (size_t)i, MXGW_LMTP_R_CODE, &code);
      mxgw_lmtp_rcpt_get_int(c, (size_t)i, MXGW_LMTP_R_STAGE, &stage);
      mxgw_lmtp_rcpt_get_int(c, (size_t)i, MXGW_LMTP_R_LOCAL, &local);
      mxgw_lmtp_rcpt_get_str(c, (size_t)i, MXGW_LMTP_R_ENH, &enh, &el);
      mxgw_lmtp_rcpt_get_str(c, (size_t)i, MXGW_LMTP_R_TEXT, &text, &tl);
      printf("msg=%d rcpt=%s code=%lld enh=%.*s stage=%lld local=%lld "
             "text=%.*s\n",
             m, rcpts[i], (long long)code, (int)el, enh, (long long)stage,
             (long long)local, (int)tl, text);
    }
    int64_t ext = 0, tlsup = 0, msgs = 0, octets = 0;
    mxgw_lmtp_get_int(c, MXGW_LMTP_INFO_EXTENSIONS, &ext);
    mxgw_lmtp_get_int(c, MXGW_LMTP_INFO_TLS, &tlsup);
    mxgw_lmtp_get_int(c, MXGW_LMTP_INFO_MESSAGES, &msgs);
    mxgw_lmtp_get_int(c, MXGW_LMTP_INFO_BODY_OCTETS, &octets);
    const char *xc = "";
    size_t xl = 0;
    mxgw_lmtp_get_str(c, MXGW_LMTP_INFO_XCLIENT, &xc, &xl);
    printf("conn msg=%d ext=%lld tls=%lld messages=%lld octets=%lld "
           "fd=%d xclient=%.*s\n",
           m, (long long)ext, (long long)tlsup, (long long)msgs,
           (long long)octets, mxgw_lmtp_conn_fd(conn), (int)xl, xc);
    fflush(stdout);
  }
  mxgw_lmtp_conn_quit(conn);
  mxgw_lmtp_conn_free(conn);
  mxgw_lmtp_config_free(cfg);
  mxgw_tls_free(tls);
  return status;
}
