// bitnet/bitnet.hpp - umbrella header: the public kernel API.
#pragma once

#include "activation.hpp"
#include "arch.hpp"
#include "config.hpp"
#include "dispatch.hpp"
#include "formats.hpp"
#include "gemv.hpp"
#include "half.hpp"
#include "reference.hpp"
#include "repack.hpp"
#include "types.hpp"
