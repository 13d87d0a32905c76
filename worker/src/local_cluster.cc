#include "lockstep/worker/local_cluster.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "lockstep/common/error.h"
#include "lockstep/control/settings.h"
#include "lockstep/model/stage_shard.h"
#include "lockstep/transport/transport.h"
#include "lockstep/worker/chip_runner.h"

namespace lockstep::worker {

using control::SlotResult;
using control::Step;

struct LocalCluster::Impl {
  schedule::GlobalSchedule schedule;
  std::unique_ptr<transport::Transport> transport;
  LocalClusterOptions options;
  int32_t slots = 0;
  int64_t max_positions = 0;
  ClusterStats stats;
  std::vector<std::thread> threads;

  // Step hand-off between the driving thread and the chip threads.
  std::mutex mu;
  std::condition_variable cv;
  int64_t generation = 0;  // bumped for every step
  const Step* current = nullptr;
  int busy = 0;  // chips still running the current step (or still opening their links)
  bool stop = false;
  std::exception_ptr error;
  std::vector<SlotResult> results;

  void Fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu);
    if (!error) error = e;
  }

  void ChipMain(ChipSetup setup, std::vector<transport::LinkSpec> links) {
    std::unique_ptr<ChipRunner> runner;
    try {
      auto endpoints =
          transport->OpenChip(static_cast<uint32_t>(setup.program.chip), links, options.timeout);
      runner = std::make_unique<ChipRunner>(std::move(setup), std::move(endpoints));
    } catch (...) {
      Fail(std::current_exception());
    }
    int64_t seen = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      --busy;
    }
    cv.notify_all();
    for (;;) {
      const Step* step = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stop || generation > seen; });
        if (stop) break;
        seen = generation;
        step = current;
      }
      std::vector<SlotResult> out;
      bool ok = runner != nullptr;
      if (ok) {
        try {
          out = runner->RunStep(*step);
        } catch (...) {
          Fail(std::current_exception());
          ok = false;
        }
      }
      if (!ok && runner) {
        // Tell the peers at once (end of stream) instead of letting them time out.
        runner->Close();
        runner.reset();
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        for (SlotResult& r : out) results.push_back(std::move(r));
        --busy;
      }
      cv.notify_all();
    }
    if (runner) runner->Close();
  }

  // Runs one step on every chip; returns the sampling chip's results.
  std::vector<SlotResult> RunStep(const Step& step) {
    std::unique_lock<std::mutex> lock(mu);
    if (error) std::rethrow_exception(error);
    current = &step;
    results.clear();
    busy = static_cast<int>(threads.size());
    ++generation;
    cv.notify_all();
    cv.wait(lock, [&] { return busy == 0; });
    if (error) std::rethrow_exception(error);
    return std::move(results);
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    cv.notify_all();
    for (std::thread& t : threads) {
      if (t.joinable()) t.join();
    }
    threads.clear();
  }
};

LocalCluster::LocalCluster(const partition::Plan& plan, const partition::ModelSpec& spec,
                           const topology::Topology& topo, const model::LlamaWeights& weights,
                           LocalClusterOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  if (options.transport != "sim" && options.transport != "inproc") {
    throw InvalidInput("local cluster: transport '" + options.transport +
                       "' runs chips as threads only with sim or inproc (ipc and tcp need worker "
                       "processes)");
  }
  const std::vector<model::StageUnits> stages = model::StagesFromPlan(plan);
  model::ValidateStages(spec, stages);
  model::CheckLlamaWeights(weights, spec);
  im.options = options;
  im.slots = options.slots > 0 ? options.slots : static_cast<int32_t>(plan.stages.size());
  im.max_positions =
      options.max_positions > 0 ? options.max_positions : spec.max_position_embeddings;
  schedule::ScheduleOptions so;
  so.tokens = 1;
  so.sequences = im.slots;
  so.link_params = options.link_params;
  im.schedule = schedule::Compile(plan, spec, topo, so);
  transport::TransportOptions to;
  to.backend = options.transport;
  // Every message of a step may be sent before its receiver gets to it; steps do not overlap
  // (each ends on every chip before the next starts), so one step's messages per link
  // direction is enough.
  to.queue_capacity = static_cast<int>(
      std::max<int64_t>(to.queue_capacity, schedule::MaxMessagesPerLinkDirection(im.schedule)));
  im.transport = transport::CreateTransport(to);
  im.stats.chips = static_cast<int>(im.schedule.programs.size());

  im.busy = static_cast<int>(im.schedule.programs.size());
  for (const schedule::ChipProgram& program : im.schedule.programs) {
    ChipSetup setup;
    setup.spec = spec;
    setup.stage = program.stage;
    setup.rank = program.rank;
    setup.program = program;
    setup.schedule_id = options.schedule_id;
    setup.timeout = options.timeout;
    setup.incoming = schedule::IncomingTables(im.schedule, program.chip);
    if (program.stage >= 0) {
      setup.shard = model::ExtractShard(weights, spec, stages, program.stage, program.rank);
      setup.group = plan.stages[static_cast<size_t>(program.stage)].chips;
    }
    std::vector<transport::LinkSpec> links =
        control::LinkSpecs(topo, schedule::ProgramLinks(program));
    im.threads.emplace_back(&Impl::ChipMain, &im, std::move(setup), std::move(links));
  }
  std::unique_lock<std::mutex> lock(im.mu);
  im.cv.wait(lock, [&] { return im.busy == 0; });
  if (im.error) {
    const std::exception_ptr e = im.error;
    lock.unlock();
    im.Stop();
    std::rethrow_exception(e);
  }
}

LocalCluster::~LocalCluster() { Close(); }

void LocalCluster::Close() { impl_->Stop(); }

const schedule::GlobalSchedule& LocalCluster::schedule() const { return impl_->schedule; }
const ClusterStats& LocalCluster::stats() const { return impl_->stats; }

std::vector<Finished> LocalCluster::Generate(const std::vector<Request>& requests) {
  Impl& im = *impl_;
  if (im.threads.empty()) throw Error(ErrorCode::kDisconnected, "local cluster is closed");
  BatcherOptions bo;
  bo.slots = im.slots;
  bo.max_positions = im.max_positions;
  Batcher batcher(bo);
  std::map<uint64_t, size_t> where;
  for (size_t i = 0; i < requests.size(); ++i) {
    batcher.Submit(requests[i]);
    where[requests[i].id] = i;
  }
  std::vector<Finished> out(requests.size());
  auto take = [&](std::vector<Finished> done) {
    for (Finished& f : done) {
      im.stats.tokens += static_cast<int64_t>(f.tokens.size());
      out[where.at(f.id)] = std::move(f);
    }
  };
  take(batcher.TakeDone());
  while (std::optional<Step> step = batcher.Next()) {
    std::vector<SlotResult> results;
    try {
      results = im.RunStep(*step);
    } catch (...) {
      im.Stop();
      throw;
    }
    ++im.stats.steps;
    take(batcher.Complete(results));
  }
  return out;
}

}  // namespace lockstep::worker
