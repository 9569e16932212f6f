# Finds xsimd >= 8.1 and makes its target usable.
# * BITNET_XSIMD_INCLUDE_DIR (optional): use the headers in that directory
#   instead of find_package (xsimd is header-only; the aarch64 cross build
#   points this at a directory holding only the host's xsimd headers).
# * Debian's xsimd 8.1 package exports a target that links a bare `xtl` (its
#   optional complex-number interop with xtensor's xtl), without a dependency on
#   xtl's package. We use no part of xtl: if no `xtl` target exists after trying
#   find_package(xtl), define an empty stand-in so the link line stays valid.
if(BITNET_XSIMD_INCLUDE_DIR)
  if(NOT TARGET xsimd)
    add_library(xsimd INTERFACE IMPORTED)
    set_target_properties(xsimd PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${BITNET_XSIMD_INCLUDE_DIR}")
  endif()
  return()
endif()
find_package(xsimd 8.1 REQUIRED)
if(NOT TARGET xtl)
  find_package(xtl QUIET)
endif()
if(NOT TARGET xtl)
  add_library(xtl INTERFACE IMPORTED)
endif()
