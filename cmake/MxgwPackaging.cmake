# SPDX-License-Identifier: MIT
# CPack settings: `cpack -G DEB` in a build directory makes three Debian
# packages from the install components:
#   libmxgw      component Runtime:     the shared library (libmxgw.so.N*)
#   libmxgw-dev  component Development: headers, libmxgw.so, libmxgw.a,
#                libmxgw.pc and the CMake package config;
#                it depends on libmxgw (= the same version).
#   mxgwd        component Daemon:      /usr/sbin/mxgwd and the commands
#                mxgw-doctor, mxgw-spf, mxgw-queue (tools/), the example
#                configurations; depends on libmxgw (= the same version).
# Install rules of other components (examples, tests) stay out of both.
# Packages install under /usr; CPACK_SET_DESTDIR makes CPack install with
# DESTDIR and the real prefix, so the generated libmxgw.pc says /usr.

set(CPACK_PACKAGE_NAME "libmxgw")
set(CPACK_PACKAGE_VENDOR "libmxgw developers")
set(CPACK_PACKAGE_CONTACT "libmxgw developers <libmxgw@localhost>")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
# No CPACK_PACKAGE_DESCRIPTION_SUMMARY: CPackDeb would prepend it to each
# component's description; the synopsis is the first line of those instead.
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX "/usr")
set(CPACK_GENERATOR "DEB")
set(CPACK_SOURCE_GENERATOR "TGZ")
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build/" "/build-[^/]*/")

set(CPACK_COMPONENTS_ALL Runtime Development Daemon)
set(CPACK_COMPONENT_RUNTIME_DISPLAY_NAME "libmxgw runtime library")
set(CPACK_COMPONENT_DEVELOPMENT_DISPLAY_NAME "libmxgw development files")
# Debian descriptions: the first line is the synopsis, the rest the body.
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION
    "embeddable C library for inbound mail (MX) gateways
libmxgw provides a sans-IO SMTP server session engine and the building
blocks of an inbound MX gateway, for embedding in any event loop.
.
This package contains the shared library.")
set(CPACK_DEBIAN_DEVELOPMENT_DESCRIPTION
    "embeddable C library for inbound mail (MX) gateways - development files
libmxgw provides a sans-IO SMTP server session engine and the building
blocks of an inbound MX gateway, for embedding in any event loop.
.
This package contains the headers, the static library, the pkg-config
file (libmxgw) and the CMake package configuration (find_package(mxgw)).")
set(CPACK_COMPONENT_DEVELOPMENT_DEPENDS Runtime)
set(CPACK_COMPONENT_DAEMON_DISPLAY_NAME "mxgwd gateway daemon and tools")
set(CPACK_DEBIAN_DAEMON_DESCRIPTION
    "inbound MX gateway daemon built on libmxgw, with diagnostics
mxgwd accepts mail over SMTP (STARTTLS, submission with AUTH, implicit
TLS), checks SPF, keeps every accepted message in a durable spool and
forwards it over LMTP to a mail store. Configured with one JSON file
(mxgwd --check-config FILE).
.
Also: mxgw-doctor (finds a gateway's silent failures), mxgw-spf (one SPF
evaluation with its trace) and mxgw-queue (list and manage the spool).")
set(CPACK_COMPONENT_DAEMON_DEPENDS Runtime)

set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY "=")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME "libmxgw")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION "libs")
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME "libmxgw-dev")
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION "libdevel")
set(CPACK_DEBIAN_DAEMON_PACKAGE_NAME "mxgwd")
set(CPACK_DEBIAN_DAEMON_PACKAGE_SECTION "mail")
# dpkg-shlibdeps cannot resolve libmxgw.so.0 of the sibling package (it is
# not installed where cpack runs), so the daemon's dependencies are stated:
# libmxgw of this very version, and what mxgwd links itself.
set(CPACK_DEBIAN_DAEMON_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_DAEMON_PACKAGE_DEPENDS
    "libmxgw (= ${PROJECT_VERSION}), libc6 (>= 2.34), libjansson4, libcrypt1")
# The static library and find_package(mxgw) need the dependencies' own
# development files (libssl, libcrypto, libcares, jansson).
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS
    "libmxgw (= ${PROJECT_VERSION}), libssl-dev, libc-ares-dev, libjansson-dev")

include(CPack)
