using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Running;
using EdgeLM.Benchmarks;

// dotnet run -c Release --project benchmarks/EdgeLM.Benchmarks -- --filter '*'             (full, minutes per case)
// dotnet run -c Release --project benchmarks/EdgeLM.Benchmarks -- --filter '*Gemv*' --job short   (quick look)
var config = DefaultConfig.Instance
    .AddDiagnoser(MemoryDiagnoser.Default)
    .AddColumn(ThroughputColumn.WeightBandwidth, ThroughputColumn.Operations)
    .WithOptions(ConfigOptions.JoinSummary);
BenchmarkSwitcher.FromAssembly(typeof(MatMulCase).Assembly).Run(args, config);
