// The control messages between coordinator and workers as plain values (see
// proto/control.capnp for the conversation). Private to the coordinator library.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "lockstep/common/error.h"
#include "lockstep/coordinator/deployment.h"
#include "lockstep/partition/model_spec.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/transport/message.h"
#include "lockstep/worker/chip_runner.h"
#include "lockstep/worker/flight_recorder.h"

namespace lockstep::coordinator {

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
  worker::Step step;
};

struct StepResultMsg {
  uint32_t chip = 0;
  int64_t index = 0;
  std::vector<worker::SlotResult> results;
  // CPU time the chip's compute thread spent in the step: its compute, without the time it
  // waited on links (a blocked receive uses no CPU).
  int64_t compute_ns = 0;
  // Where the step's wall time went on the chip (its flight recorder's sums).
  worker::StepTimes times = {};
};

struct PingMsg {};

struct HeartbeatMsg {
  int32_t chip = -1;
  int64_t last_step = -1;
  worker::ChipProgress progress;
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

struct FlightRecorderRequestMsg {};

struct FlightRecorderMsg {
  int32_t chip = -1;
  worker::ChipProgress progress;
  std::vector<worker::FlightEntry> entries;  // oldest first
};

using ControlMessage =
    std::variant<RegisterMsg, AssignmentMsg, ShardChunkMsg, ShardDoneMsg, ReadyMsg, StepMsg,
                 StepResultMsg, PingMsg, HeartbeatMsg, ErrorMsg, ShutdownMsg, SubmitMsg,
                 AcceptedMsg, TokenMsg, DoneMsg, StopServerMsg, LinkCheckMsg, LinkCheckResultMsg,
                 FlightRecorderRequestMsg, FlightRecorderMsg>;

// "register", "assignment", ...: for logs and protocol errors.
const char* MessageName(const ControlMessage& message);

}  // namespace lockstep::coordinator
