// The control messages between the coordinator and its workers (and between a serving
// coordinator and its clients), as plain values. proto/control.capnp documents the conversation
// and the wire form; codec.h is their one encoding. Plain values, copied freely; thread-safe as
// any value.
//
// To add a message kind: a struct here, an alternative at the end of ControlMessage, its name in
// MessageName (codec.cc), its schema in proto/control.capnp and its Encode/Decode pair in codec.cc
// (and a round trip in codec_test.cc).
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/control/progress.h"
#include "lockstep/control/settings.h"
#include "lockstep/control/step.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/transport/message.h"

namespace lockstep::control {

struct RegisterMsg {
  int64_t pid = 0;
  std::string hostname;
  HostInfo host;
  std::string tag;
  int32_t chip = -1;  // the chip this worker asks for; -1: any
};

struct AssignmentMsg {
  uint32_t chip = 0;
  int stage = -1, rank = -1;
  uint64_t schedule_id = 0;
  std::vector<transport::LinkSpec> links;
  TransportSettings transport;
  schedule::ChipProgram program;
  partition::ModelSpec spec;
  uint64_t shard_bytes = 0;
  uint32_t shard_chunks = 0;
  std::vector<int> cpus;
  int slots = 1;
  int64_t max_positions = 0;
  std::vector<int32_t> group;
  std::vector<schedule::LinkTable> incoming;
  // Failover: a worker already serving this (stage, rank) keeps its loaded shard; no chunks follow.
  bool reuse_shard = false;
  // A self-clocked run (worker::ChipSetup): the decode program's repeat interval and makespan,
  // one prefill program per prompt bucket, the kind lookahead.
  int64_t repeat_ns = 0;
  int64_t decode_makespan_ns = 0;
  struct Prefill {
    int64_t bucket = 0;
    int64_t chunk_tokens = 0;
    int64_t makespan_ns = 0;
    schedule::ChipProgram program;
  };
  std::vector<Prefill> prefill;
  int32_t lookahead = 1;
  // The link figures the schedule was compiled with (the plan's; only link_efficiency and
  // hop_latency_ns travel): a run in virtual time times its messages by them.
  partition::LinkCostParams link_params;
  // Where the worker reads its own shard (model::EncodeShardSource: a checkpoint on its host, or
  // the seed); no chunks follow. Empty: the shard comes in chunks.
  std::string shard_source;
};

struct ShardChunkMsg {
  uint32_t index = 0;
  uint64_t offset = 0;
  std::vector<std::byte> data;
  uint32_t crc32c = 0;
};

struct ShardDoneMsg {
  uint64_t total_bytes = 0;
  uint32_t crc32c = 0;
};

struct ReadyMsg {
  uint32_t chip = 0;
};

struct StepMsg {
  Step step;
};

struct StepResultMsg {
  uint32_t chip = 0;
  int64_t index = 0;
  std::vector<SlotResult> results;
  // CPU time the chip's compute thread spent in the step: its compute, without the time it
  // waited on links (a blocked receive uses no CPU).
  int64_t compute_ns = 0;
  // Where the step's wall time went on the chip (its flight recorder's sums).
  StepTimes times = {};
  // What it sent in the step, one entry per outgoing link used, in link order.
  std::vector<LinkBytes> sent = {};
};

struct PingMsg {};

struct HeartbeatMsg {
  int32_t chip = -1;
  int64_t last_step = -1;
  ChipProgress progress;
};

struct ErrorMsg {
  int32_t chip = -1;
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

struct ShutdownMsg {};

// The client conversation (client.h, server.h).
struct SubmitMsg {
  uint64_t id = 0;
  std::vector<int32_t> prompt;
  int64_t max_new = 0;
  model::SamplingOptions sampling;
};

struct AcceptedMsg {
  uint64_t id = 0;
};

struct TokenMsg {
  uint64_t id = 0;
  int32_t token = 0;
  int64_t index = 0;
};

struct DoneMsg {
  uint64_t id = 0;
  std::vector<int32_t> tokens;
  ErrorCode code = ErrorCode::kInternal;
  std::string error;  // empty: success
};

struct StopServerMsg {};

// Pre-flight (lockstep deploy): open these links, exchange hellos, close them, answer.
struct LinkCheckMsg {
  uint32_t chip = 0;
  std::vector<transport::LinkSpec> links;
  TransportSettings transport;
};

struct LinkCheckResultMsg {
  uint32_t chip = 0;
  bool ok = false;
  std::string message;  // why not, naming the link (the transport's error)
  uint32_t links = 0;
};

// A self-clocked run (proto/control.capnp's conversation, worker/run_control.h).
struct RunStartMsg {
  std::vector<Admission> admissions;  // the log so far (stage 0's ranks and the sampling chip)
  bool closed = false;                // no more entries will come
  double pace = 0;                    // >= 1: scheduled starts dilated; 0: unpaced
  int64_t epoch_ns = 0;               // steady-clock origin when paced
  bool virtual_time = false;          // the sim transport's clock of planned durations
};

struct AdmitMsg {
  Admission admission;
};

struct CloseLogMsg {};

struct RefusedMsg {
  int32_t chip = -1;
  int64_t number = 0;
  int64_t decided = 0;  // steps up to this one are decided
  std::string reason;
};

struct TokensMsg {
  int32_t chip = -1;
  int64_t step = 0;
  std::vector<SampledToken> tokens;
};

struct RunDoneMsg {
  int32_t chip = -1;
  int64_t steps = 0;
  int64_t prefill_steps = 0;
  int64_t tokens = 0;
  std::vector<int64_t> lag_buckets;  // worker::LagHistogram::buckets()
  int64_t lag_max_ns = 0;
};

struct FlightRecorderRequestMsg {};

struct FlightRecorderMsg {
  int32_t chip = -1;
  ChipProgress progress;
  std::vector<FlightEntry> entries;  // oldest first
};

using ControlMessage =
    std::variant<RegisterMsg, AssignmentMsg, ShardChunkMsg, ShardDoneMsg, ReadyMsg, StepMsg,
                 StepResultMsg, PingMsg, HeartbeatMsg, ErrorMsg, ShutdownMsg, SubmitMsg,
                 AcceptedMsg, TokenMsg, DoneMsg, StopServerMsg, LinkCheckMsg, LinkCheckResultMsg,
                 FlightRecorderRequestMsg, FlightRecorderMsg, RunStartMsg, AdmitMsg, CloseLogMsg,
                 RefusedMsg, TokensMsg, RunDoneMsg>;

// "register", "assignment", ...: for logs and protocol errors.
const char* MessageName(const ControlMessage& message);

}  // namespace lockstep::control
