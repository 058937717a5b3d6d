# SPDX-License-Identifier: MIT
# Adjustments for sanitizer builds (MXGW_SANITIZE=ON), included from the
# top-level CMakeLists.txt after libmxgw/. clang links the ASan/UBSan runtime
# into executables only; a shared library built with -fsanitize leaves its
# __asan_*/__ubsan_* references to be resolved at load time, from the
# executable. libmxgw.so is linked with -Wl,--no-undefined, which then fails,
# so sanitizer builds append -Wl,-z,undefs (the later option wins). The
# release build keeps checking --no-undefined.
if(MXGW_SANITIZE AND TARGET mxgw)
  set_property(TARGET mxgw APPEND PROPERTY LINK_OPTIONS "-Wl,-z,undefs")
endif()
