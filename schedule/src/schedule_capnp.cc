// Schedules <-> proto/schedule.capnp: the indexed schedule file (schedule_file.h) and one chip's
// program (program_codec.h). The only file of the schedule library that sees Cap'n Proto.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <kj/exception.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "lockstep/common/error.h"
#include "lockstep/common/file.h"
#include "lockstep/proto/read.h"
#include "lockstep/proto/schedule.capnp.h"
#include "lockstep/schedule/link_table_capnp.h"
#include "lockstep/schedule/program_codec.h"
#include "lockstep/schedule/schedule.h"
#include "lockstep/schedule/schedule_file.h"

namespace lockstep::schedule {
namespace {

constexpr uint16_t kInstrKinds = 5;  // InstrKind::kCompute .. kForward
constexpr uint16_t kTags = 7;        // Tag::kOp .. kAllReduce
constexpr uint8_t kOpKinds = 13;     // partition::OpKind::kEmbedding .. kSampling

// One chip's program: shared by schedule files and the coordinator's assignments
// (SerializeProgram), so the encoding exists once.
void PutInstructions(const std::vector<Instruction>& instructions,
                     capnp::List<proto::Instruction>::Builder list) {
  for (unsigned i = 0; i < instructions.size(); ++i) {
    const Instruction& in = instructions[i];
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

void PutProgram(const ChipProgram& cp, proto::Program::Builder o) {
  o.setChip(cp.chip);
  o.setStage(cp.stage);
  o.setRank(cp.rank);
  o.setResidentBytes(cp.resident_bytes);
  PutInstructions(cp.instructions,
                  o.initInstructions(static_cast<unsigned>(cp.instructions.size())));
}

// `bad(what)` makes the error to throw for a malformed list (of `chip`).
template <typename Bad>
std::vector<Instruction> GetInstructions(capnp::List<proto::Instruction>::Reader list, int32_t chip,
                                         const Bad& bad) {
  std::vector<Instruction> out;
  out.reserve(list.size());
  for (auto x : list) {
    const auto kind = static_cast<uint16_t>(x.getKind());
    const auto tag = static_cast<uint16_t>(x.getTag());
    if (kind >= kInstrKinds || tag >= kTags || x.getOp() >= kOpKinds) {
      throw bad("chip " + std::to_string(chip) + " instruction " + std::to_string(out.size()) +
                " has an unknown kind, tag or op");
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
    const auto here = static_cast<int32_t>(out.size());
    for (int32_t d : x.getDeps()) {
      if (d < 0 || d >= here) {
        throw bad("chip " + std::to_string(chip) + " instruction " + std::to_string(here) +
                  " depends on instruction " + std::to_string(d) + ", not an earlier one");
      }
      in.deps.push_back(d);
    }
    out.push_back(std::move(in));
  }
  return out;
}

template <typename Bad>
ChipProgram GetProgram(proto::Program::Reader o, const Bad& bad) {
  ChipProgram cp;
  cp.chip = o.getChip();
  cp.stage = o.getStage();
  cp.rank = o.getRank();
  cp.resident_bytes = o.getResidentBytes();
  cp.instructions = GetInstructions(o.getInstructions(), cp.chip, bad);
  return cp;
}

}  // namespace

void PutLinkTables(const std::vector<LinkTable>& tables,
                   capnp::List<proto::LinkTable>::Builder out) {
  for (unsigned t = 0; t < tables.size(); ++t) {
    out[t].setLink(tables[t].link);
    out[t].setFrom(tables[t].from);
    out[t].setTo(tables[t].to);
    auto r = out[t].initReservations(static_cast<unsigned>(tables[t].reservations.size()));
    for (unsigned k = 0; k < tables[t].reservations.size(); ++k) {
      r[k].setStartNs(tables[t].reservations[k].start_ns);
      r[k].setEndNs(tables[t].reservations[k].end_ns);
      r[k].setMsg(tables[t].reservations[k].msg);
    }
  }
}

std::vector<LinkTable> GetLinkTables(capnp::List<proto::LinkTable>::Reader in) {
  std::vector<LinkTable> out;
  for (auto t : in) {
    LinkTable table;
    table.link = t.getLink();
    table.from = t.getFrom();
    table.to = t.getTo();
    for (auto r : t.getReservations()) {
      table.reservations.push_back({r.getStartNs(), r.getEndNs(), r.getMsg()});
    }
    out.push_back(std::move(table));
  }
  return out;
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
  return proto::ReadMessage<proto::Program>(
      bytes, bad, [&](proto::Program::Reader r) { return GetProgram(r, bad); });
}

// ---- The schedule file (schedule_file.h) ----
namespace {

constexpr char kMagic[8] = {'L', 'K', 'S', 'C', 'H', 'E', 'D', '\n'};
constexpr size_t kPreamble = 24;

std::string Flat(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLe(std::string_view bytes, size_t at, int width) {
  uint64_t v = 0;
  for (int i = 0; i < width; ++i) {
    v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[at + static_cast<size_t>(i)])) << (8 * i);
  }
  return v;
}

void PutHeader(const CompactSchedule& s, const std::vector<std::pair<uint64_t, uint64_t>>& ranges,
               uint64_t file_bytes, proto::ScheduleHeader::Builder h) {
  h.setFormatVersion(kScheduleFileVersion);
  h.setFileBytes(file_bytes);
  h.setPlanDigest(s.plan_digest);
  h.setModel(s.model);
  h.setTopology(s.topology);
  h.setTokens(s.tokens);
  h.setSequences(s.sequences);
  h.setBatch(s.batch);
  h.setStages(s.stages);
  h.setTokenLatencyNs(s.token_latency_ns);
  h.setCycleNs(s.cycle_ns);
  h.setPeriodNs(s.period_ns);
  h.setMakespanNs(s.makespan_ns);
  h.setPrefill(s.prefill);
  h.setPromptLen(s.prompt_len);
  h.setPromptBucket(s.prompt_bucket);
  h.setPrefillChunks(s.prefill_chunks);
  h.setPrefillChunkTokens(s.prefill_chunk_tokens);
  h.setPrefillPeakBytes(s.prefill_peak_bytes);
  h.setTimeToFirstTokenNs(s.time_to_first_token_ns);
  h.setPrefillComputePathNs(s.prefill_compute_path_ns);
  h.setComputePathNs(s.compute_path_ns);
  h.setSlowestStageComputeNs(s.slowest_stage_compute_ns);
  auto phases = h.initPhases(static_cast<unsigned>(s.phases.size()));
  for (unsigned x = 0; x < s.phases.size(); ++x) {
    const Phase& ph = s.phases[x];
    auto o = phases[x];
    o.setKind(static_cast<proto::PhaseKind>(static_cast<uint16_t>(ph.kind)));
    o.setFirstToken(ph.first_token);
    o.setPasses(ph.passes);
    o.setSlots(ph.slots);
    o.setSlotNs(ph.slot_ns);
    o.setStartNs(ph.start_ns);
    o.setMessages(ph.messages);
    o.setMsgBase(ph.msg_base);
    o.setTokenLatencyNs(ph.token_latency_ns);
  }
  auto chips = h.initChips(static_cast<unsigned>(s.chips.size()));
  for (unsigned c = 0; c < s.chips.size(); ++c) {
    const CompactChip& cc = s.chips[c];
    auto o = chips[c];
    o.setChip(cc.chip);
    o.setStage(cc.stage);
    o.setRank(cc.rank);
    o.setResidentBytes(cc.resident_bytes);
    o.setOffset(ranges[c].first);
    o.setBytes(ranges[c].second);
  }
}

std::string ChipMessage(const CompactChip& c, const IncomingBodies& incoming) {
  capnp::MallocMessageBuilder message;
  auto o = message.initRoot<proto::ChipSchedule>();
  o.setChip(c.chip);
  auto phases = o.initPhases(static_cast<unsigned>(c.bodies.size()));
  for (unsigned x = 0; x < c.bodies.size(); ++x) {
    auto p = phases[x];
    PutInstructions(c.bodies[x], p.initInstructions(static_cast<unsigned>(c.bodies[x].size())));
    const std::vector<LinkTable>& tables =
        x < incoming.size() ? incoming[x] : std::vector<LinkTable>{};
    PutLinkTables(tables, p.initIncoming(static_cast<unsigned>(tables.size())));
  }
  return Flat(message);
}

// Every chip's incoming tables at once (one pass over all bodies).
std::map<ChipId, IncomingBodies> AllIncoming(const CompactSchedule& s) {
  std::map<ChipId, std::vector<std::map<std::pair<LinkId, ChipId>, LinkTable>>> tables;
  for (const CompactChip& c : s.chips) {
    for (size_t x = 0; x < c.bodies.size(); ++x) {
      for (const Instruction& in : c.bodies[x]) {
        if (in.kind != InstrKind::kSend && in.kind != InstrKind::kForward) continue;
        auto& per_phase = tables[in.peer];
        per_phase.resize(s.phases.size());
        LinkTable& t = per_phase[x][{in.link, c.chip}];
        t.link = in.link;
        t.from = c.chip;
        t.to = in.peer;
        t.reservations.push_back({in.start_ns, in.end_ns, in.msg});
      }
    }
  }
  std::map<ChipId, IncomingBodies> out;
  for (auto& [chip, per_phase] : tables) {
    IncomingBodies& b = out[chip];
    b.resize(s.phases.size());
    for (size_t x = 0; x < per_phase.size(); ++x) {
      for (auto& [key, t] : per_phase[x]) b[x].push_back(std::move(t));
    }
  }
  return out;
}

// One message of a schedule file; `what` names it in errors.
template <typename Root, typename Fn>
auto ReadMessage(std::string_view bytes, const std::string& source, const std::string& what,
                 const Fn& fn) {
  return proto::ReadMessage<Root>(
      bytes,
      [&](const std::string& why) {
        return InvalidInput(source + ": not a Lockstep schedule: " + what + ": " + why);
      },
      fn);
}

// The preamble: checks magic and version, returns the header's size.
uint64_t ReadPreamble(std::string_view bytes, uint64_t file_size, const std::string& source) {
  if (bytes.size() < kPreamble) {
    throw InvalidInput(source + ": truncated: " + std::to_string(file_size) +
                       " bytes, a schedule file starts with a " + std::to_string(kPreamble) +
                       "-byte preamble");
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    throw InvalidInput(source + ": not a Lockstep schedule file of format version " +
                       std::to_string(kScheduleFileVersion) +
                       " (no LKSCHED preamble; files of version 1 and other files are not read: "
                       "compile it again with lockstep schedule -o)");
  }
  const auto version = static_cast<uint32_t>(GetLe(bytes, 8, 4));
  if (version != kScheduleFileVersion) {
    throw InvalidInput(source + ": schedule file format version " + std::to_string(version) +
                       ", this lockstep reads version " + std::to_string(kScheduleFileVersion) +
                       " (compile it again with this lockstep)");
  }
  const uint64_t header = GetLe(bytes, 16, 8);
  if (header == 0 || header % 8 != 0 || header > file_size - kPreamble) {
    throw InvalidInput(source + ": truncated or corrupt: the header claims " +
                       std::to_string(header) + " bytes, the file has " +
                       std::to_string(file_size - kPreamble) + " after the preamble");
  }
  return header;
}

// The header: the schedule without bodies (chips hold their entries; bodies empty) and each
// chip's byte range.
CompactSchedule ReadHeader(std::string_view bytes, uint64_t file_size, const std::string& source,
                           std::vector<std::pair<uint64_t, uint64_t>>& ranges) {
  return ReadMessage<proto::ScheduleHeader>(bytes, source, "the header", [&](auto h) {
    auto bad = [&](const std::string& what) {
      return InvalidInput(source + ": not a Lockstep schedule: " + what);
    };
    if (h.getFormatVersion() != kScheduleFileVersion) {
      throw bad("the header says format version " + std::to_string(h.getFormatVersion()));
    }
    if (h.getFileBytes() != file_size) {
      throw InvalidInput(source + ": truncated or extended: " + std::to_string(file_size) +
                         " bytes, the header says " + std::to_string(h.getFileBytes()));
    }
    CompactSchedule s;
    s.plan_digest = h.getPlanDigest();
    s.model = h.getModel();
    s.topology = h.getTopology();
    s.tokens = h.getTokens();
    s.sequences = h.getSequences();
    s.batch = h.getBatch();
    s.stages = h.getStages();
    s.token_latency_ns = h.getTokenLatencyNs();
    s.cycle_ns = h.getCycleNs();
    s.period_ns = h.getPeriodNs();
    s.makespan_ns = h.getMakespanNs();
    s.prefill = h.getPrefill();
    s.prompt_len = h.getPromptLen();
    s.prompt_bucket = h.getPromptBucket();
    s.prefill_chunks = h.getPrefillChunks();
    s.prefill_chunk_tokens = h.getPrefillChunkTokens();
    s.prefill_peak_bytes = h.getPrefillPeakBytes();
    s.time_to_first_token_ns = h.getTimeToFirstTokenNs();
    s.prefill_compute_path_ns = h.getPrefillComputePathNs();
    s.compute_path_ns = h.getComputePathNs();
    s.slowest_stage_compute_ns = h.getSlowestStageComputeNs();
    if (s.tokens < 1 || s.sequences < 1 || s.batch < 1 || s.stages < 1) {
      throw bad("tokens, sequences, batch and stages must be >= 1");
    }
    for (auto o : h.getPhases()) {
      const auto kind = static_cast<uint16_t>(o.getKind());
      if (kind > static_cast<uint16_t>(PhaseKind::kDecode)) throw bad("an unknown phase kind");
      Phase ph;
      ph.kind = static_cast<PhaseKind>(kind);
      ph.first_token = o.getFirstToken();
      ph.passes = o.getPasses();
      ph.slots = o.getSlots();
      ph.slot_ns = o.getSlotNs();
      ph.start_ns = o.getStartNs();
      ph.messages = o.getMessages();
      ph.msg_base = o.getMsgBase();
      ph.token_latency_ns = o.getTokenLatencyNs();
      if (ph.passes < 1 || ph.slots < 1 || ph.slot_ns < 1 || ph.messages < 0) {
        throw bad("phase " + std::to_string(s.phases.size()) +
                  " needs passes, slots and a slot stride >= 1");
      }
      s.phases.push_back(ph);
    }
    if (s.PhaseIndex(PhaseKind::kDecode) < 0) throw bad("no decode phase");
    const uint64_t data_start = kPreamble + bytes.size();
    uint64_t next = data_start;
    for (auto o : h.getChips()) {
      CompactChip c;
      c.chip = o.getChip();
      c.stage = o.getStage();
      c.rank = o.getRank();
      c.resident_bytes = o.getResidentBytes();
      if (!s.chips.empty() && c.chip <= s.chips.back().chip) {
        throw bad("chips are not in ascending order (chip " + std::to_string(c.chip) + ")");
      }
      // Chip messages follow each other without gaps, in chip order, up to the file's end.
      if (o.getOffset() != next || o.getBytes() == 0 || o.getBytes() > file_size - next) {
        throw bad("chip " + std::to_string(c.chip) + "'s range (" + std::to_string(o.getOffset()) +
                  ", " + std::to_string(o.getBytes()) + " bytes) does not follow the previous one");
      }
      next += o.getBytes();
      ranges.push_back({o.getOffset(), o.getBytes()});
      s.chips.push_back(std::move(c));
    }
    if (next != file_size) {
      throw bad("the chips' messages end at byte " + std::to_string(next) + ", the file at " +
                std::to_string(file_size));
    }
    return s;
  });
}

void ReadChip(std::string_view bytes, const std::string& source, size_t phases, CompactChip& c,
              IncomingBodies* incoming) {
  const std::string what = "chip " + std::to_string(c.chip) + "'s message";
  ReadMessage<proto::ChipSchedule>(bytes, source, what, [&](auto o) {
    auto bad = [&](const std::string& w) {
      return InvalidInput(source + ": not a Lockstep schedule: " + w);
    };
    if (o.getChip() != c.chip || o.getPhases().size() != phases) {
      throw bad(what + " is of chip " + std::to_string(o.getChip()) + " with " +
                std::to_string(o.getPhases().size()) + " phases, expected " +
                std::to_string(phases));
    }
    c.bodies.clear();
    if (incoming) incoming->assign(phases, {});
    size_t x = 0;
    for (auto p : o.getPhases()) {
      c.bodies.push_back(GetInstructions(p.getInstructions(), c.chip, bad));
      if (incoming) (*incoming)[x] = GetLinkTables(p.getIncoming());
      ++x;
    }
    return 0;
  });
}

void CheckPlan(const CompactSchedule& s, const partition::Plan* plan, const std::string& source) {
  if (plan == nullptr) return;
  if (s.model != plan->model) {
    throw InvalidInput(source + ": compiled for model '" + s.model + "', not the plan's '" +
                       plan->model + "' (compile the schedule again from this plan)");
  }
  if (s.topology != plan->topology) {
    throw InvalidInput(source + ": compiled for topology '" + s.topology + "', not the plan's '" +
                       plan->topology + "' (compile the schedule again from this plan)");
  }
  const uint64_t digest = PlanDigest(*plan);
  if (s.plan_digest != digest) {
    std::ostringstream m;
    m << source << ": compiled for another plan of " << s.model << " on " << s.topology
      << " (plan digest " << std::hex << s.plan_digest << ", this plan's " << digest
      << "; compile the schedule again from this plan)";
    throw InvalidInput(m.str());
  }
}

std::string ErrnoText() { return std::strerror(errno); }

}  // namespace

std::string SerializeScheduleFile(const CompactSchedule& s) {
  const std::map<ChipId, IncomingBodies> incoming = AllIncoming(s);
  std::vector<std::string> chips;
  chips.reserve(s.chips.size());
  for (const CompactChip& c : s.chips) {
    auto it = incoming.find(c.chip);
    chips.push_back(ChipMessage(c, it == incoming.end() ? IncomingBodies{} : it->second));
  }
  // The header's size does not depend on the offsets it records (fixed-width fields), so
  // measure it once with zeros, then write it with the real ranges.
  std::vector<std::pair<uint64_t, uint64_t>> ranges(s.chips.size(), {0, 0});
  std::string header;
  for (int round = 0; round < 2; ++round) {
    uint64_t at = kPreamble + header.size();
    uint64_t total = at;
    for (size_t c = 0; c < chips.size(); ++c) {
      ranges[c] = {at, chips[c].size()};
      at += chips[c].size();
      total = at;
    }
    capnp::MallocMessageBuilder message;
    PutHeader(s, ranges, total, message.initRoot<proto::ScheduleHeader>());
    header = Flat(message);
  }
  std::string out(kMagic, sizeof(kMagic));
  PutU32(out, kScheduleFileVersion);
  PutU32(out, 0);
  PutU64(out, header.size());
  out += header;
  for (const std::string& c : chips) out += c;
  return out;
}

CompactSchedule ParseScheduleFile(std::string_view bytes, const std::string& source) {
  const uint64_t header_bytes = ReadPreamble(bytes, bytes.size(), source);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  CompactSchedule s =
      ReadHeader(bytes.substr(kPreamble, header_bytes), bytes.size(), source, ranges);
  for (size_t c = 0; c < s.chips.size(); ++c) {
    ReadChip(bytes.substr(ranges[c].first, ranges[c].second), source, s.phases.size(), s.chips[c],
             nullptr);
  }
  return s;
}

void WriteScheduleFile(const std::string& path, const CompactSchedule& schedule) {
  const bool json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  const std::string bytes = json ? ScheduleToJson(schedule) : SerializeScheduleFile(schedule);
  WriteFileAtomically(path, bytes);
}

CompactSchedule ReadScheduleFile(const std::string& path, const partition::Plan* plan) {
  CompactSchedule s = ParseScheduleFile(ReadFile(path, "schedule file"), path);
  CheckPlan(s, plan, path);
  return s;
}

ChipScheduleFile ReadChipSchedule(const std::string& path, ChipId chip,
                                  const partition::Plan* plan) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(ErrorCode::kNotFound, path + ": no such schedule file (" + ErrnoText() + ")");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size < 0) throw Error(ErrorCode::kNotFound, path + ": cannot read (" + ErrnoText() + ")");
  auto read_at = [&](uint64_t at, uint64_t len) {
    std::string buf(len, '\0');
    size_t done = 0;
    while (done < len) {
      const ssize_t n = ::pread(fd, buf.data() + done, len - done, static_cast<off_t>(at + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        throw InvalidInput(path + ": truncated: " + std::to_string(size) + " bytes, reading " +
                           std::to_string(len) + " at " + std::to_string(at));
      }
      done += static_cast<size_t>(n);
    }
    return buf;
  };
  const auto file_size = static_cast<uint64_t>(size);
  const std::string preamble = read_at(0, std::min<uint64_t>(kPreamble, file_size));
  const uint64_t header_bytes = ReadPreamble(preamble, file_size, path);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  ChipScheduleFile out;
  CompactSchedule all = ReadHeader(read_at(kPreamble, header_bytes), file_size, path, ranges);
  CheckPlan(all, plan, path);
  auto it = std::lower_bound(all.chips.begin(), all.chips.end(), chip,
                             [](const CompactChip& c, ChipId id) { return c.chip < id; });
  if (it == all.chips.end() || it->chip != chip) {
    std::string have;
    if (!all.chips.empty()) {
      have = " (it has " + std::to_string(all.chips.size()) + " chips, " +
             std::to_string(all.chips.front().chip) + " to " +
             std::to_string(all.chips.back().chip) + ")";
    }
    throw InvalidInput(path + ": no program for chip " + std::to_string(chip) + have);
  }
  const size_t c = static_cast<size_t>(it - all.chips.begin());
  CompactChip mine = std::move(*it);
  ReadChip(read_at(ranges[c].first, ranges[c].second), path, all.phases.size(), mine,
           &out.incoming);
  all.chips.clear();
  all.chips.push_back(std::move(mine));
  out.schedule = std::move(all);
  return out;
}

}  // namespace lockstep::schedule
