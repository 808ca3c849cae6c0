// single_communicator.cpp: the one-rank Communicator, and the helpers every implementation shares.
#include <cstring>

#include "core/error.h"
#include "dist/communicator.h"

namespace g4 {

std::vector<std::int64_t> Communicator::all_gather_i64(std::int64_t value) {
  std::vector<std::int64_t> out(static_cast<std::size_t>(size()));
  all_gather(&value, sizeof value, out.data());
  return out;
}

namespace {

class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void barrier() override {}
  void broadcast(void*, std::size_t, int root) override {
    check(root == 0, "broadcast root ", root, " of 1 rank");
  }
  void all_reduce_sum(void*, std::size_t, ReduceType) override {}
  void reduce_scatter_sum(const void* data, void* recv, const std::vector<std::size_t>& counts,
                          ReduceType type) override {
    check(counts.size() == 1, "reduce_scatter_sum: one count per rank expected");
    copy(recv, data, counts[0] * (type == ReduceType::f32 ? 4 : 8));
  }
  void all_gather(const void* send, std::size_t bytes, void* recv) override { copy(recv, send, bytes); }
  void all_gather_v(const void* send, std::size_t send_bytes, void* recv,
                    const std::vector<std::size_t>& recv_bytes) override {
    check(recv_bytes.size() == 1 && recv_bytes[0] == send_bytes, "all_gather_v: sizes disagree");
    copy(recv, send, send_bytes);
  }
  void all_to_all_v(const void* send, const std::vector<std::size_t>& send_bytes, void* recv,
                    const std::vector<std::size_t>& recv_bytes) override {
    check(send_bytes.size() == 1 && recv_bytes.size() == 1 && send_bytes[0] == recv_bytes[0],
          "all_to_all_v: sizes disagree");
    copy(recv, send, send_bytes[0]);
  }
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<SingleCommunicator>(); }

 private:
  static void copy(void* to, const void* from, std::size_t bytes) {
    if (bytes && to != from) std::memmove(to, from, bytes);
  }
};

}  // namespace

std::unique_ptr<Communicator> make_single_communicator() {
  return std::make_unique<SingleCommunicator>();
}

}  // namespace g4
