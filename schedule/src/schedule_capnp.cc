// GlobalSchedule <-> proto/schedule.capnp. The only file of the schedule library that sees
// Cap'n Proto.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "lockstep/common/error.h"
#include "lockstep/proto/schedule.capnp.h"
#include "lockstep/schedule/program_codec.h"
#include "lockstep/schedule/schedule.h"

namespace lockstep::schedule {
namespace {

constexpr uint16_t kInstrKinds = 5;  // InstrKind::kCompute .. kForward
constexpr uint16_t kTags = 7;        // Tag::kOp .. kAllReduce
constexpr uint8_t kOpKinds = 13;     // partition::OpKind::kEmbedding .. kSampling

// One chip's program: shared by schedule files and the coordinator's assignments
// (SerializeProgram), so the encoding exists once.
void PutProgram(const ChipProgram& cp, proto::Program::Builder o) {
  o.setChip(cp.chip);
  o.setStage(cp.stage);
  o.setRank(cp.rank);
  o.setResidentBytes(cp.resident_bytes);
  auto list = o.initInstructions(static_cast<unsigned>(cp.instructions.size()));
  for (unsigned i = 0; i < cp.instructions.size(); ++i) {
    const Instruction& in = cp.instructions[i];
    auto x = list[i];
    x.setKind(static_cast<proto::InstrKind>(static_cast<uint16_t>(in.kind)));
    x.setTag(static_cast<proto::Tag>(static_cast<uint16_t>(in.tag)));
    x.setOp(static_cast<uint8_t>(in.op));
    x.setToken(in.token);
    x.setSequence(in.sequence);
    x.setStage(in.stage);
    x.setLayer(in.layer);
    x.setStartNs(in.start_ns);
    x.setEndNs(in.end_ns);
    x.setDurationNs(in.duration_ns);
    x.setBytes(in.bytes);
    x.setLink(in.link);
    x.setPeer(in.peer);
    x.setMsg(in.msg);
    x.setInLink(in.in_link);
    x.setInPeer(in.in_peer);
    x.setInMsg(in.in_msg);
    auto deps = x.initDeps(static_cast<unsigned>(in.deps.size()));
    for (unsigned d = 0; d < in.deps.size(); ++d) deps.set(d, in.deps[d]);
  }
}

// `bad(what)` makes the error to throw for a malformed program.
template <typename Bad>
ChipProgram GetProgram(proto::Program::Reader o, const Bad& bad) {
  ChipProgram cp;
  cp.chip = o.getChip();
  cp.stage = o.getStage();
  cp.rank = o.getRank();
  cp.resident_bytes = o.getResidentBytes();
  cp.instructions.reserve(o.getInstructions().size());
  for (auto x : o.getInstructions()) {
    const auto kind = static_cast<uint16_t>(x.getKind());
    const auto tag = static_cast<uint16_t>(x.getTag());
    if (kind >= kInstrKinds || tag >= kTags || x.getOp() >= kOpKinds) {
      throw bad("chip " + std::to_string(cp.chip) + " instruction " +
                std::to_string(cp.instructions.size()) + " has an unknown kind, tag or op");
    }
    Instruction in;
    in.kind = static_cast<InstrKind>(kind);
    in.tag = static_cast<Tag>(tag);
    in.op = static_cast<partition::OpKind>(x.getOp());
    in.token = x.getToken();
    in.sequence = x.getSequence();
    in.stage = x.getStage();
    in.layer = x.getLayer();
    in.start_ns = x.getStartNs();
    in.end_ns = x.getEndNs();
    in.duration_ns = x.getDurationNs();
    in.bytes = x.getBytes();
    in.link = x.getLink();
    in.peer = x.getPeer();
    in.msg = x.getMsg();
    in.in_link = x.getInLink();
    in.in_peer = x.getInPeer();
    in.in_msg = x.getInMsg();
    const auto here = static_cast<int32_t>(cp.instructions.size());
    for (int32_t d : x.getDeps()) {
      if (d < 0 || d >= here) {
        throw bad("chip " + std::to_string(cp.chip) + " instruction " + std::to_string(here) +
                  " depends on instruction " + std::to_string(d) + ", not an earlier one");
      }
      in.deps.push_back(d);
    }
    cp.instructions.push_back(std::move(in));
  }
  return cp;
}

void Encode(const GlobalSchedule& s, proto::Schedule::Builder b) {
  b.setModel(s.model);
  b.setTopology(s.topology);
  b.setTokens(s.tokens);
  b.setSequences(s.sequences);
  b.setBatch(s.batch);
  b.setStages(s.stages);
  b.setTokenLatencyNs(s.token_latency_ns);
  b.setCycleNs(s.cycle_ns);
  b.setPeriodNs(s.period_ns);
  b.setMakespanNs(s.makespan_ns);
  b.setPrefill(s.prefill);
  b.setPromptLen(s.prompt_len);
  b.setPromptBucket(s.prompt_bucket);
  b.setPrefillChunks(s.prefill_chunks);
  b.setPrefillChunkTokens(s.prefill_chunk_tokens);
  b.setPrefillPeakBytes(s.prefill_peak_bytes);
  b.setTimeToFirstTokenNs(s.time_to_first_token_ns);
  b.setPrefillComputePathNs(s.prefill_compute_path_ns);
  b.setComputePathNs(s.compute_path_ns);
  b.setSlowestStageComputeNs(s.slowest_stage_compute_ns);
  b.setIterations(s.iterations);
  b.setRepeatNs(s.repeat_ns);
  b.setMsgStride(s.msg_stride);
  auto programs = b.initPrograms(static_cast<unsigned>(s.programs.size()));
  for (unsigned p = 0; p < s.programs.size(); ++p) PutProgram(s.programs[p], programs[p]);
  auto links = b.initLinks(static_cast<unsigned>(s.links.size()));
  for (unsigned l = 0; l < s.links.size(); ++l) {
    const LinkTable& t = s.links[l];
    auto o = links[l];
    o.setLink(t.link);
    o.setFrom(t.from);
    o.setTo(t.to);
    auto r = o.initReservations(static_cast<unsigned>(t.reservations.size()));
    for (unsigned i = 0; i < t.reservations.size(); ++i) {
      r[i].setStartNs(t.reservations[i].start_ns);
      r[i].setEndNs(t.reservations[i].end_ns);
      r[i].setMsg(t.reservations[i].msg);
    }
  }
}

GlobalSchedule Decode(proto::Schedule::Reader r, const std::string& source) {
  auto bad = [&](const std::string& what) {
    return InvalidInput(source + ": not a Lockstep schedule: " + what);
  };
  GlobalSchedule s;
  s.model = r.getModel();
  s.topology = r.getTopology();
  s.tokens = r.getTokens();
  s.sequences = r.getSequences();
  s.batch = r.getBatch();
  s.stages = r.getStages();
  s.token_latency_ns = r.getTokenLatencyNs();
  s.cycle_ns = r.getCycleNs();
  s.period_ns = r.getPeriodNs();
  s.makespan_ns = r.getMakespanNs();
  s.prefill = r.getPrefill();
  s.prompt_len = r.getPromptLen();
  s.prompt_bucket = r.getPromptBucket();
  s.prefill_chunks = r.getPrefillChunks();
  s.prefill_chunk_tokens = r.getPrefillChunkTokens();
  s.prefill_peak_bytes = r.getPrefillPeakBytes();
  s.time_to_first_token_ns = r.getTimeToFirstTokenNs();
  s.prefill_compute_path_ns = r.getPrefillComputePathNs();
  s.compute_path_ns = r.getComputePathNs();
  s.slowest_stage_compute_ns = r.getSlowestStageComputeNs();
  s.iterations = r.getIterations();
  s.repeat_ns = r.getRepeatNs();
  s.msg_stride = r.getMsgStride();
  if (s.iterations < 0 || (s.iterations > 0 && (s.repeat_ns < 1 || s.msg_stride < 0))) {
    throw bad("a modulo schedule needs iterations >= 0, repeat > 0 and a message stride >= 0");
  }
  if (s.tokens < 1 || s.sequences < 1 || s.batch < 1 || s.stages < 1 || !r.hasPrograms()) {
    throw bad("no programs, or tokens/sequences/batch/stages < 1");
  }
  s.programs.reserve(r.getPrograms().size());
  for (auto o : r.getPrograms()) {
    ChipProgram cp = GetProgram(o, bad);
    if (!s.programs.empty() && cp.chip <= s.programs.back().chip) {
      throw bad("programs are not in chip order (chip " + std::to_string(cp.chip) + ")");
    }
    s.programs.push_back(std::move(cp));
  }
  for (auto o : r.getLinks()) {
    LinkTable t;
    t.link = o.getLink();
    t.from = o.getFrom();
    t.to = o.getTo();
    for (auto x : o.getReservations()) {
      t.reservations.push_back({x.getStartNs(), x.getEndNs(), x.getMsg()});
    }
    s.links.push_back(std::move(t));
  }
  return s;
}

std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n') c = ' ';
  }
  return text;
}

}  // namespace

std::string SerializeSchedule(const GlobalSchedule& schedule) {
  capnp::MallocMessageBuilder message;
  Encode(schedule, message.initRoot<proto::Schedule>());
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

GlobalSchedule ParseSchedule(std::string_view bytes, const std::string& source) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    throw InvalidInput(source + ": not a Lockstep schedule (" + std::to_string(bytes.size()) +
                       " bytes is not a whole Cap'n Proto message)");
  }
  // Word-aligned copy (the reader requires alignment).
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  // A schedule is one big message: let the reader traverse all of it (twice its size bounds
  // any honest message and still stops a malicious amplification).
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 2 * words.size() + 1024;
  try {
    capnp::FlatArrayMessageReader reader(words, options);
    return Decode(reader.getRoot<proto::Schedule>(), source);
  } catch (const kj::Exception& e) {
    throw InvalidInput(source + ": not a Lockstep schedule: " + OneLine(e.getDescription().cStr()));
  }
}

std::vector<std::byte> SerializeProgram(const ChipProgram& program) {
  capnp::MallocMessageBuilder message;
  PutProgram(program, message.initRoot<proto::Program>());
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  std::vector<std::byte> out(bytes.size());
  std::memcpy(out.data(), bytes.begin(), bytes.size());
  return out;
}

ChipProgram ParseProgram(std::span<const std::byte> bytes, const std::string& context) {
  auto bad = [&](const std::string& what) {
    return Error(ErrorCode::kProtocol, context + ": malformed chip program: " + what);
  };
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    throw bad(std::to_string(bytes.size()) + " bytes is not a whole Cap'n Proto message");
  }
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  capnp::ReaderOptions options;
  options.traversalLimitInWords = 2 * words.size() + 1024;
  try {
    capnp::FlatArrayMessageReader reader(words, options);
    return GetProgram(reader.getRoot<proto::Program>(), bad);
  } catch (const kj::Exception& e) {
    throw bad(OneLine(e.getDescription().cStr()));
  }
}

void WriteScheduleFile(const std::string& path, const GlobalSchedule& schedule) {
  const bool json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorCode::kNotFound, path + ": cannot open for writing");
  out << (json ? ScheduleToJson(schedule) : SerializeSchedule(schedule));
  out.flush();
  if (!out) throw Error(ErrorCode::kNotFound, path + ": write failed");
}

GlobalSchedule ReadScheduleFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, path + ": no such schedule file");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return ParseSchedule(bytes.str(), path);
}

}  // namespace lockstep::schedule
