// The one Cap'n Proto codec of schedule::LinkTable (proto/schedule.capnp LinkTable), for every
// message that carries link tables: a schedule file's chip sections (schedule_capnp.cc) and the
// coordinator's assignment (control/src/codec.cc, proto/control.capnp Assignment.incoming).
// An adapter header: it names generated Cap'n Proto types, so only a codec's .cc that links
// lockstep::proto includes it; no other header of any library does. Pure functions, thread-safe.
#pragma once

#include <vector>

#include "lockstep/proto/schedule.capnp.h"
#include "lockstep/schedule/schedule.h"

namespace lockstep::schedule {

void PutLinkTables(const std::vector<LinkTable>& tables,
                   capnp::List<proto::LinkTable>::Builder out);
std::vector<LinkTable> GetLinkTables(capnp::List<proto::LinkTable>::Reader in);

}  // namespace lockstep::schedule
