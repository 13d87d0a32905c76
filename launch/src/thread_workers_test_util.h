// Test helper: one worker::RunWorker thread per chip of a deployment over a shared inproc
// transport, registering with `coordinator` on a synthetic 2-core host, unpinned. Join() waits for
// them (after the coordinator has shut them down); each must return without throwing.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

#include "lockstep/coordinator/coordinator.h"
#include "lockstep/topology/host.h"
#include "lockstep/transport/transport.h"
#include "lockstep/worker/agent.h"

namespace lockstep::coordinator {

class ThreadWorkers {
 public:
  ThreadWorkers(const Coordinator& coordinator, const Deployment& deployment) {
    transport::TransportOptions to;
    to.backend = "inproc";
    to.queue_capacity = deployment.transport.queue_capacity;
    shared_ = transport::CreateTransport(to);
    for (size_t i = 0; i < deployment.chips.size(); ++i) {
      threads_.emplace_back([this, address = coordinator.address()] {
        worker::WorkerOptions wo;
        wo.coordinator = address;
        wo.shared_transport = shared_.get();
        wo.host = topology::DiscoverSyntheticHost("core:2 pu:1");
        wo.pin = false;
        EXPECT_NO_THROW(worker::RunWorker(wo));
      });
    }
  }
  ~ThreadWorkers() { Join(); }

  void Join() {
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::unique_ptr<transport::Transport> shared_;
  std::vector<std::thread> threads_;
};

}  // namespace lockstep::coordinator
