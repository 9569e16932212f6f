// bitnet/bitnet.hpp - umbrella header: the public kernel API.
#pragma once

#include "activation.hpp"
#include "arch.hpp"
#include "config.hpp"
#include "dense.hpp"
#include "dispatch.hpp"
#include "formats.hpp"
#include "gemv.hpp"
#include "half.hpp"
#include "lut.hpp"
#include "reference.hpp"
#include "repack.hpp"
#include "tuning.hpp"
#include "types.hpp"
