#pragma once
// The 200 answer to a scrape (/metrics, /probe), written as the exposition is
// rendered. A body up to kWholeBytes is kept and sent whole, with
// Content-Length (gzip in one libdeflate call, the cheapest); past that it is
// sent as it comes, with chunked transfer encoding and gzip through zlib's
// stream, so the agent's memory does not grow with the size of the scrape.
// A streamed gzip body is compressed on a thread of its own, a bounded queue of
// pieces behind the rendering, so rendering and compressing (each about half
// of a full-size scrape's time in the agent) overlap instead of adding up.
// HEAD and HTTP/1.0 requests (no chunked encoding) always get the whole body.

#include <zlib.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

struct mg_connection;

namespace pgpulse::agent {

class MetricsResponse {
 public:
  // Text kept before switching to streaming: today's default scrape (about 1.2 MB) stays whole.
  static constexpr size_t kWholeBytes = 4 * 1024 * 1024;
  // Rendered text that may wait for the compressing thread before Write waits in turn.
  static constexpr size_t kQueuedBytes = 1024 * 1024;
  // The largest piece the compressing thread is handed at once.
  static constexpr size_t kSliceBytes = 256 * 1024;

  MetricsResponse(mg_connection* conn, bool gzip, bool head, bool may_chunk);
  ~MetricsResponse();
  MetricsResponse(const MetricsResponse&) = delete;
  MetricsResponse& operator=(const MetricsResponse&) = delete;

  // Takes `text` (the next piece of the exposition; cleared by the caller afterwards).
  void Write(std::string& text);
  // Sends what is left; the response is complete after it. Throws what compressing threw.
  void Finish();
  // Whether the body went out chunked (for tests and the log).
  bool streamed() const { return streaming_; }

 private:
  void StartStreaming();
  // Compresses (or not) and sends `size` bytes; with `last`, ends the gzip stream and the body.
  void Emit(const char* data, size_t size, bool last);
  void SendChunk(const char* data, size_t size);
  // The compressing thread: Emits queued pieces until Finish (or the destructor) says stop.
  void CompressLoop();

  // Between Write and the compressing thread.
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> pieces;
    size_t bytes = 0;
    bool finish = false;   // no more pieces: end the stream
    bool abandon = false;  // the response is dropped (an exception): stop, send nothing more
    std::exception_ptr error;
  };
  std::unique_ptr<Queue> queue_;
  std::thread compressor_;

  mg_connection* conn_;
  const bool gzip_, head_, may_chunk_;
  bool streaming_ = false;
  // The client went away: the rest is dropped, not compressed. Set where the body is sent (the
  // compressing thread, when there is one) and read by the renderer's Write.
  std::atomic<bool> broken_{false};
  std::string whole_;  // the body while it is below kWholeBytes
  z_stream zs_{};
  bool zs_open_ = false;
  std::string out_;  // compressed bytes on their way to the socket
};

}  // namespace pgpulse::agent
