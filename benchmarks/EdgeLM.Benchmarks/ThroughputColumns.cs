using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace EdgeLM.Benchmarks;

/// <summary>
/// Work per second from the mean time of a matmul case: GB/s of weights streamed (what bounds decoding) or GOP/s
/// (2 x multiply-adds, what bounds prompt processing).
/// </summary>
public sealed class ThroughputColumn(string name, string legend, Func<MatMulCase, double> workPerCall, double unit) : IColumn
{
    public static readonly IColumn WeightBandwidth = new ThroughputColumn("GB/s", "Weight bytes streamed per second (1 GB = 1e9 bytes)", c => c.WeightBytes, 1e9);
    public static readonly IColumn Operations = new ThroughputColumn("GOP/s", "Billions of operations per second (multiply-add = 2)", c => c.Operations, 1e9);

    public string Id => nameof(ThroughputColumn) + "." + name;
    public string ColumnName => name;
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => legend;

    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var matmul = benchmarkCase.Parameters.Items.Select(p => p.Value).OfType<MatMulCase>().FirstOrDefault();
        var stats = summary[benchmarkCase]?.ResultStatistics;
        if (matmul == null || stats == null || stats.Mean <= 0) return "-";
        double perSecond = workPerCall(matmul) / (stats.Mean * 1e-9);
        return (perSecond / unit).ToString("F2", CultureInfo.InvariantCulture);
    }

    public override string ToString() => ColumnName;
}
