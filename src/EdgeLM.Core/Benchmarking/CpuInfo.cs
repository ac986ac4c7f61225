using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using EdgeLM.Kernels.Quantized;

namespace EdgeLM.Benchmarking;

/// <summary>
/// The processor a benchmark ran on: what a result needs to be comparable (model, cores, the instruction sets the
/// JIT can use), and the physical core count, the thread count that usually runs matmul fastest (SMT siblings share
/// the vector units, so a second thread per core mostly adds contention).
/// </summary>
public sealed record CpuInfo
{
    public required string ModelName { get; init; }
    /// <summary>Logical processors this process may use (Environment.ProcessorCount: honours affinity and cgroup limits).</summary>
    public required int LogicalCores { get; init; }
    public required int PhysicalCores { get; init; }
    /// <summary>Instruction sets .NET reports as hardware-accelerated, in a fixed order.</summary>
    public required IReadOnlyList<string> IsaFlags { get; init; }
    public string Architecture { get; init; } = RuntimeInformation.ProcessArchitecture.ToString();
    /// <summary>The integer dot product the quantized kernels dispatch to (<see cref="RepackKernels.IntegerDotPath"/>).</summary>
    public string IntegerDot { get; init; } = RepackKernels.IntegerDotPath;

    private static readonly Lazy<CpuInfo> _current = new(Detect);

    /// <summary>The machine this process runs on, detected once.</summary>
    public static CpuInfo Current => _current.Value;

    /// <summary>"AMD EPYC (2 cores, 2 threads; AVX2 FMA; int8 dot avx2)": one line for tables and logs.</summary>
    public string Summary => $"{ModelName} ({PhysicalCores} cores, {LogicalCores} threads; {string.Join(' ', IsaFlags)}; int8 dot {IntegerDot})";

    public static CpuInfo Detect()
    {
        int logical = Environment.ProcessorCount;
        string? model = null;
        int? physical = null;
        if (OperatingSystem.IsLinux())
        {
            string? cpuinfo = TryRead("/proc/cpuinfo");
            if (cpuinfo != null)
            {
                var parsed = ParseProcCpuinfo(cpuinfo);
                model = parsed.ModelName;
                physical = parsed.PhysicalCores;
            }
            physical = CountSysfsCores("/sys/devices/system/cpu") ?? physical;
        }
        return new CpuInfo
        {
            ModelName = string.IsNullOrWhiteSpace(model) ? FallbackModelName() : model,
            LogicalCores = logical,
            // A cgroup or affinity mask can give us fewer CPUs than the package has cores.
            PhysicalCores = Math.Clamp(physical ?? logical, 1, logical),
            IsaFlags = DetectIsaFlags(),
        };
    }

    public static IReadOnlyList<string> DetectIsaFlags()
    {
        var flags = new List<string>();
        void Add(bool supported, string name) { if (supported) flags.Add(name); }
        Add(Avx2.IsSupported, "AVX2");
        Add(Fma.IsSupported, "FMA");
        Add(Avx512F.IsSupported, "AVX512F");
        Add(Avx512BW.IsSupported, "AVX512BW");
        Add(AvxVnni.IsSupported, "AVXVNNI");
        Add(AdvSimd.IsSupported, "AdvSimd");
        Add(Dp.IsSupported, "Dp");
        return flags;
    }

    /// <summary>
    /// Counts distinct (package, core) pairs from sysfs topology; null when the folder is missing or unreadable
    /// (containers sometimes hide it), so the caller can fall back to /proc/cpuinfo.
    /// </summary>
    internal static int? CountSysfsCores(string cpuRoot)
    {
        try
        {
            if (!Directory.Exists(cpuRoot)) return null;
            var cores = new HashSet<(string Package, string Core)>();
            foreach (string dir in Directory.EnumerateDirectories(cpuRoot, "cpu*"))
            {
                string name = Path.GetFileName(dir);
                if (name.Length <= 3 || name.AsSpan(3).ContainsAnyExceptInRange('0', '9')) continue;
                string? core = TryRead(Path.Combine(dir, "topology", "core_id"))?.Trim();
                if (core == null) continue; // offline CPUs have no topology folder
                string package = TryRead(Path.Combine(dir, "topology", "physical_package_id"))?.Trim() ?? "0";
                cores.Add((package, core));
            }
            return cores.Count > 0 ? cores.Count : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// The first "model name" and the physical core count of /proc/cpuinfo text: distinct (physical id, core id)
    /// pairs, else "cpu cores" x packages, else null (some ARM kernels list neither).
    /// </summary>
    internal static (string? ModelName, int? PhysicalCores) ParseProcCpuinfo(string text)
    {
        string? model = null, physicalId = null;
        int? coresPerPackage = null;
        var pairs = new HashSet<(string, string)>();
        var packages = new HashSet<string>();
        foreach (string rawLine in text.Split('\n'))
        {
            int colon = rawLine.IndexOf(':');
            if (colon < 0)
            {
                physicalId = null; // a blank line ends one processor's block
                continue;
            }
            string key = rawLine[..colon].Trim(), value = rawLine[(colon + 1)..].Trim();
            switch (key)
            {
                case "model name" or "Model" or "cpu model" when model == null && value.Length > 0:
                    model = value;
                    break;
                case "physical id":
                    physicalId = value;
                    packages.Add(value);
                    break;
                case "core id":
                    pairs.Add((physicalId ?? "0", value));
                    break;
                case "cpu cores" when int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int c) && c > 0:
                    coresPerPackage = c;
                    break;
            }
        }
        int? physical = pairs.Count > 0 ? pairs.Count : coresPerPackage * Math.Max(1, packages.Count);
        return (model, physical);
    }

    private static string FallbackModelName() =>
        Environment.GetEnvironmentVariable("PROCESSOR_IDENTIFIER") is { Length: > 0 } id ? id.Trim()
            : $"unknown {RuntimeInformation.ProcessArchitecture} CPU";

    private static string? TryRead(string path)
    {
        try { return File.Exists(path) ? File.ReadAllText(path) : null; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
