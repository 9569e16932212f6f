// bitnet/runner/thread_pool.hpp - the runner's fork-join pool (the kernel library owns no threads).
//
// Contract
// * thread_pool(n) starts n-1 persistent workers; the calling thread is thread 0, so a
//   parallel region runs on exactly n threads. n = 1 starts nothing and runs inline.
// * run(f) calls f(thread_index, n_threads) once on every thread and returns when all
//   calls have finished (one fork and one join per region). Nothing is allocated per call:
//   f is passed by address with a plain function-pointer trampoline.
// * parallel_for(n, grain, f) splits [0, n) into n_threads contiguous chunks whose inner
//   boundaries are multiples of `grain`, calls f(begin, end) for each non-empty chunk, and
//   runs inline when n <= grain. The split depends only on (n, grain, n_threads).
// * parallel_for_dynamic(n, grain, f) covers [0, n) the same way but hands out the chunks at
//   run time (guided: each claim takes a share of what is left, at least `grain`, a multiple of
//   grain), so a thread that falls behind (a slower memory path, a late start) takes less.
//   Which thread runs a chunk varies; f must give the same result wherever a chunk runs.
// * Waiting (workers for the next region, the caller for the join): spin for up to ~100 us (a
//   region usually follows within microseconds during a forward pass), then sleep on a C++20
//   atomic wait (futex). Bounded spinning keeps an idle runner (waiting for chat input) off the
//   CPU and, on an oversubscribed machine, lets a descheduled thread run instead of burning
//   the core it needs.
// * The first exception thrown by f on any thread is rethrown by run() after the join.
// * Not reentrant: f must not call run() on the same pool.
#pragma once

#include <algorithm>    // std::min, std::max
#include <atomic>       // generation counter, pending count
#include <chrono>       // spin budget
#include <cstdint>      // std::int64_t
#include <exception>    // std::exception_ptr
#include <fstream>      // /sys topology files
#include <mutex>        // first-error slot
#include <set>          // distinct (package, core) pairs
#include <string>       // paths
#include <thread>       // workers
#include <type_traits>  // std::remove_reference_t
#include <utility>      // std::pair
#include <vector>       // workers

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // _mm_pause
#endif

namespace bitnet::run {

// Number of physical cores: distinct (physical_package_id, core_id) pairs of the online CPUs
// in /sys/devices/system/cpu, else std::thread::hardware_concurrency(), else 1.
inline int physical_cores() {
  std::set<std::pair<int, int>> cores;
  const unsigned logical = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned cpu = 0; cpu < std::max(logical, 1024u); ++cpu) {
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu);
    std::ifstream core(dir + "/topology/core_id");
    if (!core) {
      if (cpu >= logical) break;
      continue;
    }
    if (std::ifstream online(dir + "/online"); online) {
      int on = 1;
      if (online >> on && on == 0) continue;
    }
    int core_id = -1, package = 0;
    core >> core_id;
    if (std::ifstream pkg(dir + "/topology/physical_package_id"); pkg) pkg >> package;
    if (core_id >= 0) cores.emplace(package, core_id);
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  return static_cast<int>(logical);
}

class thread_pool {
 public:
  explicit thread_pool(int n_threads) : n_(std::max(1, n_threads)) {
    workers_.reserve(static_cast<std::size_t>(n_ - 1));
    for (int i = 1; i < n_; ++i) workers_.emplace_back([this, i] { worker(i); });
  }
  ~thread_pool() {
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& t : workers_) t.join();
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int size() const noexcept { return n_; }

  template <class F> void run(F&& f) {
    using Fn = std::remove_reference_t<F>;
    if (n_ == 1) {
      f(0, 1);
      return;
    }
    ctx_ = const_cast<void*>(static_cast<const void*>(&f));
    call_ = [](void* ctx, int i, int n) { (*static_cast<Fn*>(ctx))(i, n); };
    pending_.store(n_ - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);  // publishes ctx_, call_ and pending_
    generation_.notify_all();
    invoke(0);
    for (int left = pending_.load(std::memory_order_acquire); left != 0; left = pending_.load(std::memory_order_acquire))
      wait_while(pending_, left);
    if (error_) {
      std::exception_ptr e = std::move(error_);
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

  // f(begin, end) over contiguous chunks of [0, n); inner boundaries are multiples of grain.
  template <class F> void parallel_for(std::int64_t n, std::int64_t grain, F&& f) {
    if (n <= 0) return;
    grain = std::max<std::int64_t>(1, grain);
    if (n <= grain || n_ == 1) {
      f(std::int64_t{0}, n);
      return;
    }
    run([&](int i, int nt) {
      const auto [b, e] = split(n, grain, i, nt);
      if (b < e) f(b, e);
    });
  }

  // f(begin, end) over chunks of [0, n) claimed at run time; boundaries are multiples of grain.
  // Claims shrink as the range empties (half an even share of what is left, never
  // below grain), so the last chunks are small and the threads finish together.
  template <class F> void parallel_for_dynamic(std::int64_t n, std::int64_t grain, F&& f) {
    if (n <= 0) return;
    grain = std::max<std::int64_t>(1, grain);
    if (n <= grain || n_ == 1) {
      f(std::int64_t{0}, n);
      return;
    }
    next_.store(0, std::memory_order_relaxed);  // published to the workers by run()'s release
    run([&](int, int nt) {
      for (;;) {
        std::int64_t b = next_.load(std::memory_order_relaxed), e = 0;
        do {
          if (b >= n) return;
          const std::int64_t share = (n - b) / (2 * static_cast<std::int64_t>(nt));
          e = std::min(n, b + std::max(grain, share / grain * grain));
        } while (!next_.compare_exchange_weak(b, e, std::memory_order_relaxed));
        f(b, e);
      }
    });
  }

  // Chunk i of nt: [b, e), boundaries rounded down to multiples of grain (the last ends at n).
  static std::pair<std::int64_t, std::int64_t> split(std::int64_t n, std::int64_t grain, int i, int nt) noexcept {
    const std::int64_t units = (n + grain - 1) / grain;
    const std::int64_t u0 = units * i / nt, u1 = units * (i + 1) / nt;
    return {std::min(n, u0 * grain), std::min(n, u1 * grain)};
  }

 private:
  static constexpr std::chrono::microseconds kSpin{100};

  // Returns once a != v (acquire): spins with pause up to kSpin, then sleeps in a.wait().
  template <class T> static void wait_while(const std::atomic<T>& a, T v) noexcept {
    auto t0 = std::chrono::steady_clock::now();
    for (unsigned spin = 1;; ++spin) {
      if (a.load(std::memory_order_acquire) != v) return;
      if (spin % 64 == 0 && std::chrono::steady_clock::now() - t0 > kSpin) {
        a.wait(v, std::memory_order_acquire);
        t0 = std::chrono::steady_clock::now();
      } else {
        pause();
      }
    }
  }

  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  void invoke(int i) noexcept {
    try {
      call_(ctx_, i, n_);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void worker(int i) {
    std::uint32_t seen = 0;
    for (;;) {
      wait_while(generation_, seen);
      seen = generation_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_relaxed)) return;
      invoke(i);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
    }
  }

  int n_;
  std::vector<std::thread> workers_;
  std::atomic<std::uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  alignas(64) std::atomic<std::int64_t> next_{0};  // parallel_for_dynamic's claim cursor (own cache line)
  std::atomic<bool> stop_{false};
  void (*call_)(void*, int, int) = nullptr;
  void* ctx_ = nullptr;
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace bitnet::run
