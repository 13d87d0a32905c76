#include "lockstep/model/stage_shard.h"
