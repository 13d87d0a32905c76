@0xb3c1d2e4f5a69788;
# A Lockstep static global schedule in its compact form (lockstep::schedule::CompactSchedule,
# schedule/include/lockstep/schedule/compact.h), written by `lockstep schedule --plan P -o
# S.schedule`: each phase's pattern once, and each chip's instructions for one pass of sequence
# slot 0 (its body) once, with the link directions into it. Times are integer nanoseconds, sizes
# bytes. Writing the same schedule always gives the same bytes.
#
# File layout, format version 2 (integers little-endian):
#   bytes  0..7   magic "LKSCHED\n"
#   bytes  8..11  format version (UInt32) = 2
#   bytes 12..15  zero
#   bytes 16..23  H, the header's size in bytes (UInt64, a multiple of 8)
#   bytes 24..    the header: one ScheduleHeader message (capnp::messageToFlatArray, unpacked)
#   then one ChipSchedule message per chip, in chip order, at the offsets the header's index
#   gives, up to ScheduleHeader.fileBytes. A reader of one chip's program reads the first 24
#   bytes, the header and that chip's message, nothing else. Version 1 files (one Schedule
#   message of every explicit program, no magic) are not read.
#
# Instructions follow schedule.h: a body is the chip's instructions in planned start order;
# `deps` index earlier instructions of the same body; messages are matched by `msg` (the
# sender's Send/Forward) = `inMsg` (the receiver's Recv/Forward), never by arrival order; body
# message ids are the phase's (copy j's are msgBase + j x messages + id).

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

enum PhaseKind {
  prefillChunk @0;
  prefillLast @1;
  decode @2;
}

# How a phase's bodies repeat: copy j (pass j / slots, slot j % slots) runs j x slotNs after
# copy 0, with token firstToken + pass, sequence + slot, message ids msgBase + j x messages + id.
struct Phase {
  kind @0 :PhaseKind;
  firstToken @1 :Int32;
  passes @2 :Int64;
  slots @3 :Int32;
  slotNs @4 :Int64;
  startNs @5 :Int64;
  messages @6 :Int64;
  msgBase @7 :Int64;
  tokenLatencyNs @8 :Int64;
}

# Where one chip's message is in the file, and what the chip is.
struct ChipEntry {
  chip @0 :Int32;
  stage @1 :Int32;      # -1: the chip only forwards
  rank @2 :Int32;
  residentBytes @3 :Int64;
  offset @4 :UInt64;    # from the start of the file
  bytes @5 :UInt64;
}

struct ScheduleHeader {
  formatVersion @0 :UInt32;  # = the preamble's
  fileBytes @1 :UInt64;      # the whole file
  planDigest @2 :UInt64;     # FNV-1a 64 of the plan file's bytes (schedule::PlanDigest)
  model @3 :Text;
  topology @4 :Text;
  tokens @5 :Int64;
  sequences @6 :Int64;
  batch @7 :Int64;
  stages @8 :Int32;
  tokenLatencyNs @9 :Int64;
  cycleNs @10 :Int64;
  periodNs @11 :Int64;
  makespanNs @12 :Int64;
  prefill @13 :Bool;
  promptLen @14 :Int64;
  promptBucket @15 :Int64;
  prefillChunks @16 :Int64;
  prefillChunkTokens @17 :Int64;
  prefillPeakBytes @18 :Int64;
  timeToFirstTokenNs @19 :Int64;
  prefillComputePathNs @20 :Int64;
  computePathNs @21 :Int64;
  slowestStageComputeNs @22 :Int64;
  phases @23 :List(Phase);
  chips @24 :List(ChipEntry);  # ascending chip ids
}

# One chip's part of one phase: its body, and the reservations of copy 0 on the link directions
# into it (the order its messages arrive; body times and message ids).
struct ChipPhase {
  instructions @0 :List(Instruction);
  incoming @1 :List(LinkTable);
}

struct ChipSchedule {
  chip @0 :Int32;
  phases @1 :List(ChipPhase);  # one per ScheduleHeader.phases entry
}
