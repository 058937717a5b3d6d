/* SPDX-License-Identifier: MIT */
/*
 * mxgw_export.h: symbol visibility and deprecation macros for libmxgw.
 *
 * Every public declaration carries MXGW_EXTERN. The library is compiled with
 * hidden visibility by default (and a linker version script), so only the
 * symbols marked here are exported: `nm -D libmxgw.so` lists mxgw_* only.
 * Define MXGW_STATICLIB when linking the static library on platforms where
 * that matters (it is harmless elsewhere).
 */
#ifndef MXGW_EXPORT_H
#define MXGW_EXPORT_H

#if defined(MXGW_BUILDING_LIBRARY) && !defined(MXGW_STATICLIB) && \
    (defined(__GNUC__) || defined(__clang__))
#define MXGW_EXTERN __attribute__((visibility("default")))
#else
#define MXGW_EXTERN
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MXGW_DEPRECATED_FOR(f) __attribute__((deprecated("use " #f)))
#define MXGW_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define MXGW_DEPRECATED_FOR(f)
#define MXGW_WARN_UNUSED
#endif

#endif /* MXGW_EXPORT_H */
