// The time left before a pending item decides itself (its deadline and what happens then).

import { fmtDuration, parseTime } from "../ui.js";

/** {text, urgent} for an item's deadline: "auto-deny in 4m 10s". */
export function countdown(item) {
  const deadline = parseTime(item.deadline);
  if (!deadline) return { text: "no deadline", urgent: false };
  const left = (deadline.getTime() - Date.now()) / 1000;
  const outcome = item.on_timeout || "deny";
  if (left <= 0) return { text: `deadline passed (auto-${outcome})`, urgent: true };
  return { text: `auto-${outcome} in ${fmtDuration(left)}`, urgent: left < 60 };
}
