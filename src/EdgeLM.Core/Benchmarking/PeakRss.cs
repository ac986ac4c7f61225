using System.Diagnostics;
using System.Globalization;

namespace EdgeLM.Benchmarking;

/// <summary>
/// Peak resident memory of this process (the high-water mark of RSS), which includes the memory-mapped weight
/// pages that were touched: the number that decides whether a model fits a machine.
/// </summary>
public static class PeakRss
{
    private const string StatusPath = "/proc/self/status";
    private const string ClearRefsPath = "/proc/self/clear_refs";

    /// <summary>Peak resident bytes since the process started or since the last successful <see cref="TryReset"/>.</summary>
    /// <remarks>Linux: VmHWM of /proc/self/status. Elsewhere: Process.PeakWorkingSet64 (Windows reports the true
    /// peak; macOS reports the current resident size, a lower bound).</remarks>
    public static long Read()
    {
        if (OperatingSystem.IsLinux())
        {
            try
            {
                if (ParseVmHwm(File.ReadAllText(StatusPath)) is long hwm) return hwm;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        using var self = Process.GetCurrentProcess();
        return Math.Max(self.PeakWorkingSet64, self.WorkingSet64);
    }

    /// <summary>Whether <see cref="Read"/> measures the true peak (rather than a lower bound) on this OS.</summary>
    public static bool IsExactPeak => OperatingSystem.IsLinux() || OperatingSystem.IsWindows();

    /// <summary>
    /// Lowers the high-water mark to the current RSS so that the next <see cref="Read"/> measures the peak of one
    /// phase (Linux 4.0+: writing 5 to /proc/self/clear_refs). Returns false where that is not possible; the
    /// peak then stays process-wide.
    /// </summary>
    public static bool TryReset()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            File.WriteAllText(ClearRefsPath, "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>VmHWM in bytes from /proc/[pid]/status text, or null when the line is missing or malformed.</summary>
    internal static long? ParseVmHwm(string status)
    {
        foreach (string line in status.Split('\n'))
        {
            if (!line.StartsWith("VmHWM:", StringComparison.Ordinal)) continue;
            var parts = line["VmHWM:".Length..].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && parts[1] == "kB"
                && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out long kb) && kb <= long.MaxValue / 1024)
                return kb * 1024;
            return null;
        }
        return null;
    }
}
