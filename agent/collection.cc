#include "agent/collection.h"

namespace pgpulse::agent {

const char* StatusName(CollectorStatus s) {
  switch (s) {
    case CollectorStatus::Ok: return "ok";
    case CollectorStatus::Cached: return "cached";
    case CollectorStatus::Failed: return "failed";
    case CollectorStatus::Skipped: return "skipped";
    case CollectorStatus::Pending: return "pending";
  }
  return "?";
}

}  // namespace pgpulse::agent
