using System.Runtime.Intrinsics.X86;
using EdgeLM.Benchmarking;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Benchmarking;

public class CpuInfoTests
{
    [Fact]
    public void ProcCpuinfoCountsDistinctCoresAcrossPackagesAndSmtSiblings()
    {
        // Two packages x two cores x two hyper-threads = 8 logical, 4 physical; core ids repeat across packages.
        var blocks = new List<string>();
        int processor = 0;
        foreach (int package in new[] { 0, 1 })
            foreach (int core in new[] { 0, 1 })
                foreach (int _ in new[] { 0, 1 })
                    blocks.Add($"processor\t: {processor++}\nmodel name\t: Test CPU 9000\nphysical id\t: {package}\ncore id\t\t: {core}\ncpu cores\t: 2\n");
        var (model, physical) = CpuInfo.ParseProcCpuinfo(string.Join("\n", blocks));
        Assert.Equal("Test CPU 9000", model);
        Assert.Equal(4, physical);
    }

    [Fact]
    public void ProcCpuinfoFallsBackToCpuCoresThenToNothing()
    {
        Assert.Equal(6, CpuInfo.ParseProcCpuinfo("processor : 0\nmodel name : X\ncpu cores : 6\n\nprocessor : 1\ncpu cores : 6\n").PhysicalCores);
        var arm = CpuInfo.ParseProcCpuinfo("processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd\n\n");
        Assert.Null(arm.ModelName);
        Assert.Null(arm.PhysicalCores);
    }

    [Fact]
    public void SysfsTopologyCountsCoresNotThreads()
    {
        string root = TestPaths.NewTempDir();
        try
        {
            void Cpu(string name, string? core, string package = "0")
            {
                string topo = Path.Combine(root, name, "topology");
                Directory.CreateDirectory(core == null ? Path.Combine(root, name) : topo);
                if (core == null) return;
                File.WriteAllText(Path.Combine(topo, "core_id"), core + "\n");
                File.WriteAllText(Path.Combine(topo, "physical_package_id"), package + "\n");
            }
            Cpu("cpu0", "0"); Cpu("cpu1", "0"); Cpu("cpu2", "1"); Cpu("cpu3", "1"); Cpu("cpu4", "0", package: "1");
            Cpu("cpu5", null);          // offline: no topology
            Cpu("cpufreq", "9");        // not a CPU folder
            Assert.Equal(3, CpuInfo.CountSysfsCores(root));
            Assert.Null(CpuInfo.CountSysfsCores(Path.Combine(root, "missing")));
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void DetectedFactsAreConsistentWithTheRuntime()
    {
        var cpu = CpuInfo.Detect();
        Assert.False(string.IsNullOrWhiteSpace(cpu.ModelName));
        Assert.Equal(Environment.ProcessorCount, cpu.LogicalCores);
        Assert.InRange(cpu.PhysicalCores, 1, cpu.LogicalCores);
        Assert.Equal(Avx2.IsSupported, cpu.IsaFlags.Contains("AVX2"));
        Assert.Equal(Avx512F.IsSupported, cpu.IsaFlags.Contains("AVX512F"));
        Assert.Equal(AvxVnni.IsSupported, cpu.IsaFlags.Contains("AVXVNNI"));
        Assert.Contains(cpu.ModelName, cpu.Summary);
    }
}

[Collection(PeakRssCollection.Name)]
public class PeakRssTests
{
    [Fact]
    public void VmHwmIsParsedInBytes()
    {
        Assert.Equal(1612L * 1024, PeakRss.ParseVmHwm("Name:\tx\nVmPeak:\t 3060 kB\nVmHWM:\t    1612 kB\nVmRSS:\t 1000 kB\n"));
        Assert.Null(PeakRss.ParseVmHwm("VmRSS:\t 1000 kB\n"));
        Assert.Null(PeakRss.ParseVmHwm("VmHWM:\t lots kB\n"));
        Assert.Null(PeakRss.ParseVmHwm("VmHWM:\t 12 MB\n"));
    }

    [Fact]
    public unsafe void PeakCoversMemoryThatWasTouched()
    {
        const int Bytes = 64 << 20;
        byte* p = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc(Bytes);
        try
        {
            for (int i = 0; i < Bytes; i += 4096) p[i] = 1; // touch every page so it becomes resident
            Assert.True(PeakRss.Read() >= Bytes);
        }
        finally { System.Runtime.InteropServices.NativeMemory.Free(p); }
    }
}

/// <summary>
/// Tests that read or reset the process-wide peak RSS, or count the process's managed allocations, run one at a time
/// and after the parallel collections (other tests' allocations would show up in their numbers).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class PeakRssCollection
{
    public const string Name = "PeakRss";
}
