# Wire format of one transport message between two directly linked chips (transport/, issue #5).
#
# A message travels as two ZeroMQ frames (a multipart message; large ipc/tcp payloads: segments,
# below):
#   frame 1: a FrameHeader, serialized as a standard single-segment, unpacked Cap'n Proto message
#            (the 8-byte segment table followed by the segment). At most 4096 bytes; a larger or
#            malformed header is rejected before anything else is read.
#   frame 2: the payload: `payloadLength` raw bytes of the tensor in row-major order, element
#            type `dtype`, little-endian. Sent from the sender's buffer without an extra copy.
# Segmented payloads (ZeroMQ ipc/tcp, tensors of 2 MiB and more over a link direction whose queue
# bound is not known, transport/message.h QueueBound): the payload travels instead as
# `count` (2..64) consecutive ZeroMQ messages, so the receiver checksums part k while part k+1 is
# still arriving: the first is three frames [header][tag 0][segment 0], each further one two frames
# [tag k][segment k]. A tag is 20 bytes, little-endian: magic "LSG1", index k, count (uint32 each),
# total payload length (uint64); its size is no multiple of 8, so it never decodes as a header.
# Segments are non-empty and in order and together hold exactly `payloadLength` bytes; the header's
# `payloadCrc32c` covers the whole payload. A lost, repeated, missing, short or overlong segment,
# or a tag that disagrees with tag 0, is refused naming link and step (transport/src/frame.cc,
# zmq_transport.cc). The header schema itself is unchanged.
#
# The header carries the CRC32C (Castagnoli, reflected, init and final xor 0xFFFFFFFF) of the
# payload; the receiver recomputes it and rejects the message on mismatch, naming link and step.
# Which links checksum is the link checksum policy (TransportOptions::checksums: auto, on, off):
# by default (auto) only tcp without CURVE, where bytes cross a
# network and nothing else checks every message; same-host links (sim, inproc, ipc) and CURVE
# links (Poly1305 authenticates each message) send `payloadChecked = false` and `payloadCrc32c =
# 0` ("unchecked"). A checked frame is verified by every receiver; a receiver that checksums
# itself refuses an unchecked one, naming the link.
#
# Three kinds of messages share the header: `hello` (once per direction when the link comes up;
# src/dst name the two ends so miswiring is detected), `data` (a tensor), and `close` (the
# sender will send nothing more; everything before it has been delivered in order). `hello` and
# `close` have an empty payload.
#
# All integers are fixed-width; nothing in the header depends on wall-clock time, so the bytes on
# the wire are identical across runs and backends.
@0x99bc0e80f61d0383;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("lockstep::proto");

struct FrameHeader {
  version @0 :UInt16;          # wire version; this schema is version 1
  kind @1 :Kind;
  scheduleId @2 :UInt64;       # the compiled global schedule this message belongs to
  step @3 :Int64;              # schedule step (instruction index of the transfer)
  srcChip @4 :UInt32;          # sending end of the link
  srcPort @5 :UInt32;
  dstChip @6 :UInt32;          # receiving end of the link
  dstPort @7 :UInt32;
  tensorId @8 :UInt64;         # which tensor of the plan
  sequence @9 :UInt64;         # 0, 1, 2, ... per link direction, counting data messages only
  tokenIndex @10 :Int64;       # token position the tensor belongs to (-1 when not per token)
  dtype @11 :UInt8;            # lockstep::Dtype value (0 fp32, 1 fp16, 2 bf16, 3 int8, 4 fp8)
  shape @12 :List(Int64);      # tensor shape, at most 8 dimensions, each >= 0
  payloadLength @13 :UInt64;   # bytes in frame 2; equals product(shape) * bytes(dtype)
  payloadCrc32c @14 :UInt32;   # CRC32C of frame 2
  sendTimeNs @15 :Int64;       # virtual time the sender issued the transfer (sim backend; else 0)
  payloadChecked @16 :Bool = true;  # false: payloadCrc32c is 0 and not verified (see above)
  srcRank @17 :Int32 = -1;     # rank in its tensor-parallel group of the chip that produced the
                               # tensor, kept by chips that forward it; -1: none
  ahead @18 :UInt64;           # what the sender's runtime announces of a later step (the kind of
                               # step it runs); carried unread by the transport

  enum Kind {
    data @0;
    hello @1;
    close @2;
  }
}
