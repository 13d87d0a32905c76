@0xb3c1d2e4f5a69788;
# A Lockstep static global schedule (lockstep::schedule::GlobalSchedule), written by
# `lockstep schedule --plan P -o S.schedule` and read by the workers (each takes its own chip's
# program). One message per file, unpacked (capnp::messageToFlatArray). Encoding the same
# schedule always gives the same bytes. Times are integer nanoseconds, sizes bytes.
#
# Instructions follow schedule.h: a program is the chip's instructions in planned start order;
# `deps` index earlier instructions of the same program; messages are matched by `msg` (the
# sender's Send/Forward) = `inMsg` (the receiver's Recv/Forward), never by arrival order.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("lockstep::proto");

enum InstrKind {
  compute @0;
  reduce @1;
  send @2;
  recv @3;
  forward @4;
}

enum Tag {
  op @0;
  reduceScatter @1;
  allGather @2;
  gather @3;
  activation @4;
  token @5;
  allReduce @6;
}

struct Instruction {
  kind @0 :InstrKind;
  tag @1 :Tag;
  op @2 :UInt8;         # partition::OpKind (Compute only), in cost_model.h's order
  token @3 :Int32;      # < 0: a prefill chunk (-1 = the last)
  sequence @4 :Int32;
  stage @5 :Int32;
  layer @6 :Int32;      # -1 = none
  startNs @7 :Int64;
  endNs @8 :Int64;
  durationNs @9 :Int64;
  bytes @10 :Int64;
  link @11 :Int32;      # outgoing hop (Send/Forward); -1 = none
  peer @12 :Int32;
  msg @13 :Int64;
  inLink @14 :Int32;    # incoming hop (Recv/Forward); -1 = none
  inPeer @15 :Int32;
  inMsg @16 :Int64;
  deps @17 :List(Int32);
}

struct Program {
  chip @0 :Int32;
  stage @1 :Int32;      # -1: the chip only forwards
  rank @2 :Int32;
  residentBytes @3 :Int64;
  instructions @4 :List(Instruction);
}

struct Reservation {
  startNs @0 :Int64;
  endNs @1 :Int64;
  msg @2 :Int64;
}

# One direction of one link.
struct LinkTable {
  link @0 :Int32;
  from @1 :Int32;
  to @2 :Int32;
  reservations @3 :List(Reservation);
}

struct Schedule {
  model @0 :Text;
  topology @1 :Text;
  tokens @2 :Int64;
  sequences @3 :Int64;
  batch @4 :Int64;
  stages @5 :Int32;
  tokenLatencyNs @6 :Int64;
  cycleNs @7 :Int64;
  periodNs @8 :Int64;
  makespanNs @9 :Int64;
  prefill @10 :Bool;
  promptLen @11 :Int64;
  promptBucket @12 :Int64;
  prefillChunks @13 :Int64;
  prefillChunkTokens @14 :Int64;
  prefillPeakBytes @15 :Int64;
  timeToFirstTokenNs @16 :Int64;
  prefillComputePathNs @17 :Int64;
  computePathNs @18 :Int64;
  slowestStageComputeNs @19 :Int64;
  programs @20 :List(Program);
  links @21 :List(LinkTable);
  # Modulo form: the programs are one period, run `iterations` times, iteration k shifted by
  # k x repeatNs, with token k and message ids + k x msgStride. 0 iterations = explicit form.
  iterations @22 :Int64;
  repeatNs @23 :Int64;
  msgStride @24 :Int64;
}
