// Tests of the control plane: the smallest model spec the wire accepts (assignments carry the
// spec in partition's codec, which refuses a model with no layers or heads).
#pragma once

#include "lockstep/partition/model_spec.h"

namespace lockstep::coordinator {

inline partition::ModelSpec FakeSpec() {
  partition::ModelSpec s;
  s.name = "fake";
  s.num_layers = 1;
  s.hidden_size = 8;
  s.intermediate_size = 8;
  s.num_heads = 1;
  s.num_kv_heads = 1;
  s.head_dim = 8;
  s.vocab_size = 4;
  return s;
}

}  // namespace lockstep::coordinator
