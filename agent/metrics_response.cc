#include "agent/metrics_response.h"

#include <civetweb.h>

#include <algorithm>
#include <stdexcept>
#include <system_error>

#include "agent/gzip.h"

namespace pgpulse::agent {

namespace {

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr size_t kChunkBytes = 64 * 1024;  // compressed bytes per chunk on the wire

}  // namespace

MetricsResponse::MetricsResponse(mg_connection* conn, bool gzip, bool head, bool may_chunk)
    : conn_(conn), gzip_(gzip), head_(head), may_chunk_(may_chunk && !head) {}

MetricsResponse::~MetricsResponse() {
  if (compressor_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(queue_->mu);
      queue_->abandon = true;
    }
    queue_->cv.notify_all();
    compressor_.join();
  }
  if (zs_open_) deflateEnd(&zs_);
}

void MetricsResponse::Write(std::string& text) {
  if (broken_) return;  // nobody to send it to
  if (compressor_.joinable()) {
    // Copies of at most kSliceBytes, so that the queue holds no more than about kQueuedBytes
    // beside the renderer's own piece (about a MiB), which stays with it.
    for (size_t at = 0; at < text.size(); at += kSliceBytes) {
      std::unique_lock<std::mutex> lock(queue_->mu);
      queue_->cv.wait(lock, [&] { return queue_->bytes < kQueuedBytes || queue_->error; });
      if (queue_->error) return;  // Finish reports it; nothing more can be sent
      const size_t n = std::min(kSliceBytes, text.size() - at);
      queue_->bytes += n;
      queue_->pieces.emplace_back(text, at, n);
      lock.unlock();
      queue_->cv.notify_all();
    }
    return;
  }
  if (streaming_) {
    Emit(text.data(), text.size(), false);
    return;
  }
  whole_ += text;
  if (may_chunk_ && whole_.size() > kWholeBytes) StartStreaming();
}

void MetricsResponse::Finish() {
  if (compressor_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(queue_->mu);
      queue_->finish = true;
    }
    queue_->cv.notify_all();
    compressor_.join();
    if (queue_->error) std::rethrow_exception(queue_->error);
    return;
  }
  if (streaming_) {
    Emit(nullptr, 0, true);
    return;
  }
  std::string body = gzip_ ? Gzip(whole_) : std::move(whole_);
  std::string().swap(whole_);
  mg_printf(conn_, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s\r\n",
            kContentType, body.size(), gzip_ ? "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n" : "");
  if (!head_ && !body.empty()) mg_write(conn_, body.data(), body.size());
}

void MetricsResponse::StartStreaming() {
  if (gzip_) {
    // 15 + 16: a gzip wrapper; level 1 as for whole bodies (scrapes favour CPU over bytes).
    if (deflateInit2(&zs_, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      throw std::runtime_error("cannot start a gzip stream");
    zs_open_ = true;
  }
  streaming_ = true;
  mg_printf(conn_,
            "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\nCache-Control: no-store\r\n%s\r\n",
            kContentType, gzip_ ? "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n" : "");
  Emit(whole_.data(), whole_.size(), false);
  std::string().swap(whole_);
  if (gzip_) {
    queue_ = std::make_unique<Queue>();
    try {
      compressor_ = std::thread([this] { CompressLoop(); });
    } catch (const std::system_error&) {
      queue_.reset();  // no thread to spare: compress on this one, as the pieces come
    }
  }
}

void MetricsResponse::CompressLoop() {
  Queue& q = *queue_;
  try {
    for (;;) {
      std::string piece;
      {
        std::unique_lock<std::mutex> lock(q.mu);
        q.cv.wait(lock, [&] { return q.abandon || q.finish || !q.pieces.empty(); });
        if (q.abandon) return;
        if (q.pieces.empty()) break;  // finished, all sent
        piece = std::move(q.pieces.front());
        q.pieces.pop_front();
      }
      Emit(piece.data(), piece.size(), false);
      {
        std::lock_guard<std::mutex> lock(q.mu);
        q.bytes -= piece.size();
      }
      q.cv.notify_all();
    }
    Emit(nullptr, 0, true);
  } catch (...) {
    std::lock_guard<std::mutex> lock(q.mu);
    q.error = std::current_exception();
  }
  q.cv.notify_all();
}

void MetricsResponse::Emit(const char* data, size_t size, bool last) {
  if (broken_) return;  // the client went away: compressing the rest would be for nobody
  if (!gzip_) {
    if (size > 0) SendChunk(data, size);
  } else {
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
    zs_.avail_in = static_cast<uInt>(size);
    const int flush = last ? Z_FINISH : Z_NO_FLUSH;
    int rc = Z_OK;
    do {
      const size_t used = out_.size();
      out_.resize(used + kChunkBytes);
      zs_.next_out = reinterpret_cast<Bytef*>(out_.data() + used);
      zs_.avail_out = static_cast<uInt>(kChunkBytes);
      rc = deflate(&zs_, flush);
      if (rc == Z_STREAM_ERROR) throw std::runtime_error("gzip stream failed");
      out_.resize(used + kChunkBytes - zs_.avail_out);
      if (out_.size() >= kChunkBytes) {
        SendChunk(out_.data(), out_.size());
        out_.clear();
      }
    } while (zs_.avail_out == 0 || (last && rc != Z_STREAM_END));
    if (last && !out_.empty()) {
      SendChunk(out_.data(), out_.size());
      out_.clear();
    }
  }
  // A chunk of length 0 ends the body.
  if (last && !broken_) mg_send_chunk(conn_, "", 0);
}

void MetricsResponse::SendChunk(const char* data, size_t size) {
  if (broken_ || size == 0) return;  // an empty chunk would end the body early
  if (mg_send_chunk(conn_, data, static_cast<unsigned int>(size)) <= 0) broken_ = true;
}

}  // namespace pgpulse::agent
