# SPDX-License-Identifier: MIT
# Install rules for libmxgw, included from the top-level CMakeLists.txt after
# libmxgw/ has defined the targets mxgw (shared) and mxgw_static. Everything
# goes into one of two install components, which become the two Debian
# packages (cmake/MxgwPackaging.cmake): "Runtime" (the versioned shared
# library, package libmxgw) and "Development" (headers, the libmxgw.so
# link, the static library, libmxgw.pc and the CMake package config, package
# libmxgw-dev). `find_package(mxgw CONFIG)` then gives mxgw::mxgw and
# mxgw::mxgw_static. It also registers the ctest tests labelled "install"
# (tests/install/check-install.sh) and "package" (tests/install/check-deb.sh).

include(CMakePackageConfigHelpers)

# pkg-config modules the static library needs. Later issues append here:
#   libssl libcrypto (TLS), libcares (DNS), jansson (queue/config).
set(MXGW_PC_REQUIRES_PRIVATE "libssl libcrypto")
string(APPEND MXGW_PC_REQUIRES_PRIVATE " libcares")
string(APPEND MXGW_PC_REQUIRES_PRIVATE " jansson")
# Plain -l flags the static library needs that have no .pc file.
set(MXGW_PC_LIBS_PRIVATE "")
string(APPEND MXGW_PC_LIBS_PRIVATE " -pthread")

set(MXGW_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/mxgw")

# --- headers: the public headers plus the generated mxgw_version.h -----------
set(_mxgw_headers "")
foreach(_h IN LISTS MXGW_PUBLIC_HEADERS)
  if(NOT IS_ABSOLUTE "${_h}")
    set(_h "${PROJECT_SOURCE_DIR}/libmxgw/${_h}")
  endif()
  list(APPEND _mxgw_headers "${_h}")
endforeach()
if(NOT _mxgw_headers)
  message(FATAL_ERROR "MXGW_PUBLIC_HEADERS is empty: include MxgwInstall.cmake "
                      "after add_subdirectory(libmxgw)")
endif()
install(FILES ${_mxgw_headers}
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/mxgw"
        COMPONENT Development)

# --- libraries ---------------------------------------------------------------
install(TARGETS mxgw
        EXPORT mxgwTargets
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
          COMPONENT Runtime
          NAMELINK_COMPONENT Development
        RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT Runtime
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(TARGETS mxgw_static
        EXPORT mxgwTargets
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT Development
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

# --- CMake package config ----------------------------------------------------
install(EXPORT mxgwTargets
        NAMESPACE mxgw::
        FILE mxgwTargets.cmake
        DESTINATION "${MXGW_CMAKE_INSTALL_DIR}"
        COMPONENT Development)
configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/mxgwConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/cmake/mxgwConfig.cmake"
  INSTALL_DESTINATION "${MXGW_CMAKE_INSTALL_DIR}")
# Before 1.0 a minor release may break the API (docs/abi.md), so 0.x only
# matches the same minor version; from 1.0 on, the same major version.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_mxgw_compat SameMinorVersion)
else()
  set(_mxgw_compat SameMajorVersion)
endif()
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/cmake/mxgwConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY ${_mxgw_compat})
install(FILES "${PROJECT_BINARY_DIR}/cmake/mxgwConfig.cmake"
              "${PROJECT_BINARY_DIR}/cmake/mxgwConfigVersion.cmake"
        DESTINATION "${MXGW_CMAKE_INSTALL_DIR}"
        COMPONENT Development)

# --- pkg-config --------------------------------------------------------------
# Generated at install time (not configure time) so that the paths in it are
# those of the actual prefix: `cmake --install build --prefix DIR` and CPack
# (which installs with DESTDIR and prefix /usr, see MxgwPackaging.cmake)
# both get a correct file.
install(CODE "
  set(MXGW_PC_TEMPLATE \"${PROJECT_SOURCE_DIR}/pkgconfig/libmxgw.pc.in\")
  set(MXGW_PC_OUTPUT \"${PROJECT_BINARY_DIR}/pkgconfig/libmxgw.pc\")
  set(MXGW_PC_LIBDIR_REL \"${CMAKE_INSTALL_LIBDIR}\")
  set(MXGW_PC_INCLUDEDIR_REL \"${CMAKE_INSTALL_INCLUDEDIR}\")
  set(MXGW_PC_REQUIRES_PRIVATE \"${MXGW_PC_REQUIRES_PRIVATE}\")
  set(MXGW_PC_LIBS_PRIVATE \"${MXGW_PC_LIBS_PRIVATE}\")
  set(PROJECT_VERSION \"${PROJECT_VERSION}\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/MxgwGeneratePc.cmake\")
" COMPONENT Development)

# --- tests of the installed library ------------------------------------------
if(MXGW_BUILD_TESTS AND NOT MXGW_SANITIZE)
  add_test(NAME install.check-install
           COMMAND "${PROJECT_SOURCE_DIR}/tests/install/check-install.sh"
                   "${PROJECT_BINARY_DIR}")
  set_tests_properties(install.check-install PROPERTIES
    LABELS install TIMEOUT 600 RUN_SERIAL TRUE)
  add_test(NAME package.check-deb
           COMMAND "${PROJECT_SOURCE_DIR}/tests/install/check-deb.sh"
                   "${PROJECT_BINARY_DIR}")
  set_tests_properties(package.check-deb PROPERTIES
    LABELS package TIMEOUT 600 RUN_SERIAL TRUE)
endif()
