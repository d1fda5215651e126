// Status propagation helpers for absl::Status / absl::StatusOr.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define OLMO_CONCAT_INNER_(a, b) a##b
#define OLMO_CONCAT_(a, b) OLMO_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define OLMO_RETURN_IF_ERROR(expr)                 \
  do {                                             \
    ::absl::Status olmo_status_ = (expr);          \
    if (!olmo_status_.ok()) return olmo_status_;   \
  } while (0)

// `lhs = value of expr` (an absl::StatusOr<T>), or returns its error status.
#define OLMO_ASSIGN_OR_RETURN(lhs, expr) \
  OLMO_ASSIGN_OR_RETURN_IMPL_(OLMO_CONCAT_(olmo_statusor_, __LINE__), lhs, expr)
#define OLMO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
