# What bitnet-server needs (examples/server, its tests): Debian's cpp-httplib, found through its
# pkg-config file (a compiled library whose classes depend on the feature macros it was built
# with; the imported target carries them), and nlohmann-json. Sets BITNET_SERVER_DEPS to TRUE
# when both are there; the imported target PkgConfig::BITNET_HTTPLIB is global, so the examples
# and the tests can both use it. Included from more than one directory; finding twice is harmless.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND AND NOT TARGET PkgConfig::BITNET_HTTPLIB)
  pkg_check_modules(BITNET_HTTPLIB QUIET IMPORTED_TARGET GLOBAL cpp-httplib)
endif()
find_package(nlohmann_json 3 QUIET)
if(TARGET PkgConfig::BITNET_HTTPLIB AND nlohmann_json_FOUND)
  set(BITNET_SERVER_DEPS TRUE)
else()
  set(BITNET_SERVER_DEPS FALSE)
endif()
