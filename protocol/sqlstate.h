// SQLSTATE codes sluiced answers with, named as in PostgreSQL's errcodes.txt.
#pragma once

namespace sluice::sqlstate {

inline constexpr const char* kConnectionFailure = "08006";
inline constexpr const char* kConnectionException = "08000";
inline constexpr const char* kProtocolViolation = "08P01";
inline constexpr const char* kFeatureNotSupported = "0A000";
inline constexpr const char* kSyntaxError = "42601";
inline constexpr const char* kInvalidAuthorizationSpecification = "28000";
inline constexpr const char* kInvalidPassword = "28P01";
inline constexpr const char* kInvalidCatalogName = "3D000";
inline constexpr const char* kTooManyConnections = "53300";
inline constexpr const char* kQueryCanceled = "57014";
inline constexpr const char* kAdminShutdown = "57P01";
inline constexpr const char* kCannotConnectNow = "57P03";
inline constexpr const char* kIdleInTransactionSessionTimeout = "25P03";
inline constexpr const char* kTransactionTimeout = "25P04";  // PostgreSQL 17's transaction_timeout
inline constexpr const char* kIdleSessionTimeout = "57P05";
inline constexpr const char* kInvalidSqlStatementName = "26000";
inline constexpr const char* kDuplicatePreparedStatement = "42P05";
inline constexpr const char* kProgramLimitExceeded = "54000";
inline constexpr const char* kInternalError = "XX000";

}  // namespace sluice::sqlstate
