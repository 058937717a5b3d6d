# SPDX-License-Identifier: MIT
# Install-time helper (run from cmake_install.cmake, see MxgwInstall.cmake):
# fills pkgconfig/libmxgw.pc.in with the prefix being installed to and
# installs the result into <libdir>/pkgconfig. Inputs are the MXGW_PC_*
# variables set by the install(CODE) block; CMAKE_INSTALL_PREFIX is the
# actual prefix (it honours `cmake --install --prefix`), and file(INSTALL)
# adds $DESTDIR itself.

set(MXGW_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
if(IS_ABSOLUTE "${MXGW_PC_LIBDIR_REL}")
  set(MXGW_PC_LIBDIR "${MXGW_PC_LIBDIR_REL}")
  set(_pc_dest "${MXGW_PC_LIBDIR_REL}/pkgconfig")
else()
  set(MXGW_PC_LIBDIR "\${prefix}/${MXGW_PC_LIBDIR_REL}")
  set(_pc_dest "${CMAKE_INSTALL_PREFIX}/${MXGW_PC_LIBDIR_REL}/pkgconfig")
endif()
if(IS_ABSOLUTE "${MXGW_PC_INCLUDEDIR_REL}")
  set(MXGW_PC_INCLUDEDIR "${MXGW_PC_INCLUDEDIR_REL}")
else()
  set(MXGW_PC_INCLUDEDIR "\${prefix}/${MXGW_PC_INCLUDEDIR_REL}")
endif()

configure_file("${MXGW_PC_TEMPLATE}" "${MXGW_PC_OUTPUT}" @ONLY)
file(INSTALL DESTINATION "${_pc_dest}" TYPE FILE FILES "${MXGW_PC_OUTPUT}")
