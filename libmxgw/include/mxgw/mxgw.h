/* SPDX-License-Identifier: MIT */
/*
 * mxgw.h: umbrella header for libmxgw, an embeddable C library for building
 * inbound mail (MX) gateways. Include this, or the component headers you use.
 *
 * See mxgw_common.h for errors, allocators and the thread-safety statement,
 * and mxgw_session.h for the sans-IO SMTP server session.
 */
#ifndef MXGW_H
#define MXGW_H

#include <mxgw/mxgw_version.h> /* generated at build time */
#include "mxgw_common.h"
#include "mxgw_session.h"
#include "mxgw_tls.h"
#include "mxgw_spf.h" /* includes mxgw_resolver.h */
#include "mxgw_lmtp.h"
#include "mxgw_queue.h"
#include "mxgw_deliver.h"
#include "mxgw_proxy.h"
#include "mxgw_doctor.h"
#include "mxgw_server.h"
#include "mxgw_proxyproto.h"

#endif /* MXGW_H */
