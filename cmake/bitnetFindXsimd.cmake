# Finds xsimd >= 8.1 and makes its target usable.
# Debian's xsimd 8.1 package exports a target that links a bare `xtl` (its
# optional complex-number interop with xtensor's xtl), without a dependency on
# xtl's package. We use no part of xtl: if no `xtl` target exists after trying
# find_package(xtl), define an empty stand-in so the link line stays valid.
find_package(xsimd 8.1 REQUIRED)
if(NOT TARGET xtl)
  find_package(xtl QUIET)
endif()
if(NOT TARGET xtl)
  add_library(xtl INTERFACE IMPORTED)
endif()
