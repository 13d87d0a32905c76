// Compiles every public header of the worker library on its own (self-contained headers).
#include "lockstep/worker/batcher.h"
#include "lockstep/worker/chip_runner.h"
#include "lockstep/worker/local_cluster.h"
