//! The examples' own CPU time.

/// This process's CPU time so far (user and system), in seconds, from
/// `/proc/self/stat` (Linux only; `None` elsewhere).
pub fn own_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses: utime and stime
    // are the 14th and 15th fields of the line.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // Linux reports in clock ticks of 1/100 s (USER_HZ) on every common platform.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
