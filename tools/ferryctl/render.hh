// What ferryctl prints for people: aligned tables of the API's JSON answers (--json prints the
// JSON itself). Missing fields show as "-": the tables do not break when the API adds or lacks
// a field.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace ferry::ferryctl {

// Columns left-aligned, two spaces apart, no trailing blanks; header first.
std::string format_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

// A JSON value as a table cell: strings as they are, numbers, true/false as yes/no, "-" for
// null or missing.
std::string cell(const nlohmann::json& object, const std::string& key);

// 1073741824 -> "1 GiB"; sizes that are not a whole number of KiB/MiB/GiB/TiB stay in bytes.
std::string format_bytes(uint64_t bytes);

std::string subsystems_table(const nlohmann::json& subsystems);
std::string subsystem_text(const nlohmann::json& subsystem);
std::string namespaces_table(const nlohmann::json& namespaces);
// `subsystem`: a SUBSYSTEM column with it first (controller list over every subsystem).
std::string controllers_table(const nlohmann::json& controllers, bool with_subsystem = false);
std::string listeners_table(const nlohmann::json& listeners);
// `ferryctl ana show`: per listener, every ANA group that has namespaces or a state set, its
// state through that listener (unlisted: optimized) and its namespaces ("NQN/NSID"), from
// GET /listeners and GET /subsystems. ana_table renders that view.
nlohmann::json ana_view(const nlohmann::json& listeners, const nlohmann::json& subsystems);
std::string ana_table(const nlohmann::json& view);
// Hosts with "set" or "-" per key (the API says only whether each is set).
std::string hosts_table(const nlohmann::json& hosts);
std::string referrals_table(const nlohmann::json& referrals);
std::string devices_table(const nlohmann::json& devices);

// Every number in the stats document as "name  value" lines, named by the path to it; array
// elements are named by their "nqn", "nsid", "cntlid", "qid", "id" or "name" where they have
// one. Arrays of plain numbers (histogram buckets) are left out: --json shows them. With
// `previous` and `seconds`, a third column gives the change per second.
std::string stats_text(const nlohmann::json& stats, const std::optional<nlohmann::json>& previous = std::nullopt,
                       double seconds = 0);

}  // namespace ferry::ferryctl
