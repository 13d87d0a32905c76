# Control plane between the coordinator and its workers (control/, issue #7).
#
# One ZeroMQ ROUTER socket on the coordinator, one DEALER socket per worker. Every control
# message is ONE ZeroMQ frame holding a `ControlMessage` serialized as a standard unpacked Cap'n
# Proto message (segment table + segments); the ROUTER adds the worker's identity frame in front.
# Encode/decode lives in control/src/codec.cc, one pair per message kind (STYLE.md rule 5).
#
# Conversation (-> worker to coordinator, <- coordinator to worker):
#   -> register      once, on connect: pid, host name, hwloc host summary
#   <- assignment    chip, stage, rank, links, transport options, program, model spec, shard size
#   <- shardChunk*   the weight shard (a safetensors buffer) in order, each chunk with its CRC32C
#   <- shardDone     total bytes and the CRC32C of the whole shard (checked before use)
#   -> ready         links opened, shard loaded; the worker waits for steps
#   <- step*         the Step of worker/chip_runner.h; every worker gets the same steps in order
#   -> stepResult    after each step; only the sampling chip carries results
#   <- ping / -> heartbeat  at a fixed interval; the heartbeat names the last completed step
#   -> error         a worker whose step fails says why, then waits for a new assignment or
#                    shutdown
# Failover (issue #8): when a worker dies or goes silent, every survivor gets a second
# `assignment` (new schedule id, new program and links, reuseShard = true, no chunks): it
# abandons the step in flight, drops its links and serves the new program once its new links
# are open (-> ready). The replacement worker on the spare chip registers and is deployed as
# above.
#   <- shutdown      close links and exit
# A self-clocked run (issue #19, worker/run_control.h) instead of steps:
#   <- runStart      to every chip once ready: the admission log so far (only stage 0's ranks and
#                    the sampling chip get entries), whether it is closed, pace and epoch; every
#                    chip then runs step after step on its own, clocked by its links
#   <- admit         (serving) one more log entry, naming the first step it may be prefilled at
#   <- closeLog      no more entries: rank 0 of stage 0 stops the run once the log is drained
#   -> refused       rank 0 of stage 0: an entry named a step already decided (or fits no
#                    prefill program); it was not applied
#   -> tokens        the sampling chip: the tokens one step drew (and logits when asked)
#   -> runDone       every chip, after the stop step: its steps and its lag histogram
# Pre-flight (lockstep deploy), after register and before any assignment:
#   <- linkCheck       this chip's links and transport options: open them (each end says hello
#                      naming its chip and port, and checks the peer's), then close them
#   -> linkCheckResult ok, or the first link that failed and why
#   <- flightRecorderRequest / -> flightRecorder  when no step completes for the stall timeout:
#                    every worker sends its progress and its last N executed instructions
# A peer that is silent for longer than the heartbeat timeout is treated as gone: the
# coordinator fails the run naming the chip and its last completed step; a worker exits with a
# one-line error naming the coordinator's address.
#
# All integers are fixed-width; times that shape a schedule are int64 ns.
@0xc41d6a3be5a0f3a7;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("lockstep::proto");
using Schedule = import "schedule.capnp";

struct ControlMessage {
  version @0 :UInt16;  # control protocol version; this schema is version 2
  union {
    register @1 :Register;
    assignment @2 :Assignment;
    shardChunk @3 :ShardChunk;
    shardDone @4 :ShardDone;
    ready @5 :Ready;
    step @6 :Step;
    stepResult @7 :StepResult;
    ping @8 :Void;
    heartbeat @9 :Heartbeat;
    error @10 :ErrorReport;
    shutdown @11 :Void;
    # The client conversation (coordinator/client.h), on the serving coordinator's separate
    # client socket (lockstep-coordinator --serve ADDR), never on the workers' socket:
    #   -> submit       a request: the client's id, prompt, max_new, sampling
    #   <- accepted     the id: admitted into the coordinator's queue
    #   <- token*       each generated token as the sampling chip returns it
    #   <- done         the id and every token, or an error code and message (refused: prompt too
    #                   long, the coordinator stopping ...)
    #   -> stopServer   ask the coordinator to finish what runs, shut its workers down and exit
    submit @12 :ClientSubmit;
    accepted @13 :UInt64;
    token @14 :ClientToken;
    done @15 :ClientDone;
    stopServer @16 :Void;
    linkCheck @17 :LinkCheck;
    linkCheckResult @18 :LinkCheckResult;
    flightRecorderRequest @19 :Void;        # coordinator -> every worker when a run stalls
    flightRecorder @20 :FlightRecorderDump; # the answer: progress and the last N instructions
    runStart @21 :RunStart;
    admit @22 :Admission;
    closeLog @23 :Void;
    refused @24 :Refused;
    tokens @25 :Tokens;
    runDone @26 :RunDone;
  }
}

struct ClientSubmit {
  id @0 :UInt64;             # chosen by the client, unique among its requests
  prompt @1 :List(Int32);
  maxNew @2 :Int64;
  sampling @3 :Sampling;
}

struct ClientToken {
  id @0 :UInt64;
  token @1 :Int32;
  index @2 :Int64;           # 0 for the first generated token
}

struct ClientDone {
  id @0 :UInt64;
  tokens @1 :List(Int32);
  code @2 :UInt8;            # lockstep::ErrorCode value when `error` is not empty
  error @3 :Text;            # empty: success
}

struct HostSummary {
  source @0 :Text;
  packages @1 :Int32;
  numaNodes @2 :Int32;
  cores @3 :Int32;
  pus @4 :Int32;
  corePus @5 :List(Int32);   # per core, in hwloc logical order: its first PU's OS index
}

struct Register {
  pid @0 :Int64;
  hostname @1 :Text;
  host @2 :HostSummary;
  tag @3 :Text;        # free text from the worker's command line (e.g. a run directory)
  chip @4 :Int32;      # the chip this worker asks for (lockstep-worker --chip); -1: any
}

struct Link {
  aChip @0 :UInt32;
  aPort @1 :UInt32;
  bChip @2 :UInt32;
  bPort @3 :UInt32;
  latencyNs @4 :Int64;
  bytesPerSecond @5 :Int64;
}

struct TransportOptions {
  backend @0 :Text;    # ipc or tcp (sim and inproc workers share the coordinator's process)
  queueCapacity @1 :Int32;
  maxPayloadBytes @2 :UInt64;
  ipcDir @3 :Text;
  tcpBasePort @4 :Int32;
  tcpHosts @5 :List(ChipHost);
  connectTimeoutMs @6 :Int64;
  stepTimeoutMs @7 :Int64;   # per transport Send/Receive inside a step
  curve @8 :Bool;            # tcp: CURVE on every link; each worker reads its own key pair
  curvePublicKey @9 :Text;   # Z85: the run's public key, the only key a link end accepts
  # Which links checksum their payloads (transport::LinkChecksums): 0 auto (same-host links
  # unchecked, tcp with CRC32C unless CURVE authenticates), 1 on, 2 off. Older peers send 0.
  linkChecksums @10 :UInt8;
}

struct ChipHost {
  chip @0 :UInt32;
  host @1 :Text;
}

struct Assignment {
  chip @0 :UInt32;
  stage @1 :Int32;     # -1: a chip that only forwards
  rank @2 :Int32;
  scheduleId @3 :UInt64;
  links @4 :List(Link);          # this chip's links, in the order OpenChip opens them
  transport @5 :TransportOptions;
  program @6 :Data;              # a proto/schedule.capnp Program (schedule/program_codec.h)
  spec @7 :Data;                 # partition::SerializeModelSpec (the plan's own spec codec)
  shardBytes @8 :UInt64;         # size of the shard that follows in chunks
  shardChunks @9 :UInt32;
  cpus @10 :List(Int32);         # CPU OS indices to pin to; empty: do not pin
  slots @11 :Int32;              # pipeline slots (sequences in flight)
  maxPositions @12 :Int64;       # KV cache positions per slot
  group @13 :List(Int32);        # the chips of its stage's TP group, in rank order
  incoming @14 :List(Schedule.LinkTable); # reservation tables of the link directions into
                                          # this chip (schedule/link_table_capnp.h)
  reuseShard @15 :Bool;          # failover: keep the shard already loaded (same stage and rank);
                                 # no chunks follow, the worker abandons its step, reopens links
  # A self-clocked run's programs and time (worker::ChipSetup): the decode program's repeat
  # interval and makespan, one prefill program per prompt bucket, the kind lookahead.
  repeatNs @16 :Int64;
  decodeMakespanNs @17 :Int64;
  prefill @18 :List(PrefillProgram);
  lookahead @19 :Int32 = 1;
  shardSource @20 :Text;         # model::EncodeShardSource: the worker builds its shard itself
                                 # from a checkpoint on its host or the seed; no chunks follow
  # The link figures the schedule was compiled with (partition::LinkCostParams, the plan's): a
  # self-clocked run in virtual time times its messages by them.
  linkEfficiency @21 :Float64 = 0.9;
  hopLatencyNs @22 :Int64 = -1;  # < 0: each link's own latency
}

struct PrefillProgram {
  bucket @0 :Int64;          # the longest prompt it takes
  chunkTokens @1 :Int64;
  makespanNs @2 :Int64;
  program @3 :Data;          # a proto/schedule.capnp Program
}

# control::Admission: an entry of a self-clocked run's admission log.
struct Admission {
  number @0 :Int64;          # its place in the log (the order of prefills)
  step @1 :Int64;            # the first step whose kind may be its prefill
  request @2 :UInt64;
  tokens @3 :List(Int32);    # the prompt (a replay after a failover: prompt + generated)
  generated @4 :Int64;       # tokens generated before (the first sample index)
  maxNew @5 :Int64;          # the request's tokens in all
  sampling @6 :Sampling;
  logits @7 :Bool;
}

struct RunStart {
  admissions @0 :List(Admission);
  closed @1 :Bool;           # no more entries will come
  pace @2 :Float64;          # >= 1: dilated scheduled starts; 0: unpaced
  epochNs @3 :Int64;         # steady-clock origin of the scheduled times when paced
  virtualTime @4 :Bool;      # the sim transport: a clock of planned durations
}

struct Refused {
  chip @0 :Int32;
  number @1 :Int64;
  decided @2 :Int64;         # steps up to this one are decided
  reason @3 :Text;
}

struct SampledToken {
  slot @0 :Int32;
  request @1 :UInt64;
  index @2 :Int64;           # the request's token index
  token @3 :Int32;
  last @4 :Bool;             # the request is finished
  logits @5 :List(Float32);
}

struct Tokens {
  chip @0 :Int32;
  step @1 :Int64;
  tokens @2 :List(SampledToken);
}

struct RunDone {
  chip @0 :Int32;
  steps @1 :Int64;
  prefillSteps @2 :Int64;
  tokens @3 :Int64;
  lagBuckets @4 :List(Int64);  # worker::LagHistogram's bucket counts
  lagMaxNs @5 :Int64;
}

struct ShardChunk {
  index @0 :UInt32;
  offset @1 :UInt64;
  data @2 :Data;
  crc32c @3 :UInt32;   # of `data`
}

struct ShardDone {
  totalBytes @0 :UInt64;
  crc32c @1 :UInt32;   # of the whole shard
}

struct Ready {
  chip @0 :UInt32;
}

struct Sampling {
  temperature @0 :Float64;
  topP @1 :Float64;
  seed @2 :UInt64;
}

struct SlotWork {
  slot @0 :Int32;
  request @1 :UInt64;
  position @2 :Int64;
  tokens @3 :List(Int32);
  reset @4 :Bool;
  sampling @5 :Sampling;
  sampleIndex @6 :Int64;
  logits @7 :Bool = true;    # return the logits with the token
}

struct Step {
  index @0 :Int64;
  work @1 :List(SlotWork);
}

struct SlotResult {
  slot @0 :Int32;
  request @1 :UInt64;
  token @2 :Int32;
  logits @3 :List(Float32);
}

struct StepResult {
  chip @0 :UInt32;
  index @1 :Int64;
  results @2 :List(SlotResult);
  computeNs @3 :Int64;       # CPU time of the chip's compute thread in this step (waits excluded)
  # worker::StepTimes: wall time inside the program's instructions by kind, and the whole step.
  computeWallNs @4 :Int64;
  reduceNs @5 :Int64;
  sendNs @6 :Int64;
  recvNs @7 :Int64;
  forwardNs @8 :Int64;
  stepNs @9 :Int64;
  # control::LinkBytes: the payload bytes the chip put on each outgoing link in this step.
  sent @10 :List(LinkBytes);
}

struct LinkBytes {
  link @0 :Int32;
  peer @1 :Int32;            # the chip at the link's far end
  bytes @2 :Int64;
}

struct Heartbeat {
  chip @0 :Int32;            # -1 before the assignment
  lastStep @1 :Int64;        # last completed step; -1 before the first
  progress @2 :Progress;     # where the chip is now (the step, the instruction it waits in)
}

# worker::FlightEntry: one executed (or executing) instruction of a chip's program.
struct FlightEntry {
  step @0 :Int64 = -1;
  op @1 :Int32 = -1;         # instruction index in the program
  kind @2 :UInt8;            # schedule::InstrKind
  link @3 :Int32 = -1;       # Send: outgoing link; Recv/Forward: incoming; -1 compute
  port @4 :Int32 = -1;       # this chip's port on that link
  peer @5 :Int32 = -1;       # the chip at its far end
  bytes @6 :Int64;
  startNs @7 :Int64;         # since the step started (wall clock, diagnostics only)
  endNs @8 :Int64 = -1;      # -1 while it runs
}

# worker::ChipProgress.
struct Progress {
  step @0 :Int64 = -1;
  running @1 :Bool;
  lastCompletedStep @2 :Int64 = -1;
  current @3 :FlightEntry;
  sinceStepStartNs @4 :Int64;
}

struct FlightRecorderDump {
  chip @0 :Int32;
  progress @1 :Progress;
  entries @2 :List(FlightEntry);  # oldest first
}

struct ErrorReport {
  chip @0 :Int32;
  code @1 :UInt8;            # lockstep::ErrorCode value
  message @2 :Text;
}

# Pre-flight link check (lockstep deploy): open `links` with `transport`, exchange hellos, close.
struct LinkCheck {
  chip @0 :UInt32;
  links @1 :List(Link);
  transport @2 :TransportOptions;
}

struct LinkCheckResult {
  chip @0 :UInt32;
  ok @1 :Bool;
  message @2 :Text;    # empty when ok; else the transport's error (names link, chip and port)
  links @3 :UInt32;    # links opened
}
