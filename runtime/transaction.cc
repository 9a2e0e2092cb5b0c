// The public TransactionContext and TransactionHandle, over the runtime's
// TransactionState and HandleState.
#include "flatstore/transaction.h"

#include "runtime/transaction_state.h"

namespace flatstore {

// ---------------------------------------------------------------------------------------
// Public wrappers

absl::StatusOr<SubmitOutcome> TransactionContext::submitErased(
    const TableDescription& table, const internal::ErasedChange& change) {
  return state_->submit(table, change);
}

internal::QuerySource* TransactionContext::source(const TableDescription& table) {
  return state_->source(table);
}

bool TransactionContext::chunkFull() const { return state_->chunkFull(); }

absl::Status TransactionContext::abort(std::string_view reason) {
  state_->abort();
  return absl::AbortedError(std::string(reason));
}

absl::StatusOr<TransactionResult> TransactionHandle::wait() const { return state_->wait(); }
bool TransactionHandle::done() const { return state_->done(); }
void TransactionHandle::onComplete(
    std::function<void(const absl::StatusOr<TransactionResult>&)> callback) const {
  state_->onComplete(std::move(callback));
}

}  // namespace flatstore
