using System.Text;
using System.Text.Json;
using EdgeLM.Benchmarking;
using EdgeLM.Inference;

namespace EdgeLM.Tests.Benchmarking;

public class BenchReportTests
{
    private static readonly BenchModelInfo Model = new()
    {
        Path = "/models/q.gguf", Architecture = "qwen2", TypeName = "Q4_K - Medium",
        SizeBytes = 400L << 20, FileBytes = (400L << 20) + 12345, ParameterCount = 494_032_768,
    };

    private static readonly CpuInfo Cpu = new() { ModelName = "Test, \"Quoted\" CPU", LogicalCores = 4, PhysicalCores = 2, IsaFlags = ["AVX2", "FMA"] };

    private static BenchResult Result(BenchTest test, long[] samples, KvCacheType kv = KvCacheType.F32) => new()
    {
        Test = test, KvCacheType = kv, SamplesNs = samples, PeakRssBytes = 500L << 20, PeakRssIsPerTest = true,
        StartedAt = new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero),
    };

    private static readonly BenchResult[] Results =
    [
        Result(new BenchTest(512, 0, 2), [2_000_000_000, 1_000_000_000]),
        Result(new BenchTest(0, 128, 2), [4_000_000_000, 4_000_000_000, 2_000_000_000]),
    ];

    [Fact]
    public void JsonHasOneObjectPerTestWithSamplesAndStatistics()
    {
        using var ms = new MemoryStream();
        BenchReport.WriteJson(ms, Model, Cpu, Results);
        using var doc = JsonDocument.Parse(ms.ToArray());
        var tests = doc.RootElement.EnumerateArray().ToArray();
        Assert.Equal(2, tests.Length);

        var pp = tests[0];
        Assert.Equal("pp512", pp.GetProperty("test").GetString());
        Assert.Equal(512, pp.GetProperty("n_prompt").GetInt32());
        Assert.Equal(0, pp.GetProperty("n_gen").GetInt32());
        Assert.Equal(2, pp.GetProperty("n_threads").GetInt32());
        Assert.Equal([2_000_000_000L, 1_000_000_000L], pp.GetProperty("samples_ns").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal([256.0, 512.0], pp.GetProperty("samples_ts").EnumerateArray().Select(e => e.GetDouble()));
        Assert.Equal(384.0, pp.GetProperty("avg_ts").GetDouble(), 9);
        Assert.Equal(Math.Sqrt(2 * 128.0 * 128.0), pp.GetProperty("stddev_ts").GetDouble(), 6);
        Assert.Equal(1_500_000_000L, pp.GetProperty("avg_ns").GetInt64());
        Assert.Equal("Q4_K - Medium", pp.GetProperty("model_ftype").GetString());
        Assert.Equal(494_032_768L, pp.GetProperty("model_n_params").GetInt64());
        Assert.Equal(Model.FileBytes, pp.GetProperty("model_file_bytes").GetInt64());
        Assert.Equal(500L << 20, pp.GetProperty("peak_rss_bytes").GetInt64());
        Assert.Equal("test", pp.GetProperty("peak_rss_scope").GetString());
        Assert.Equal(Cpu.ModelName, pp.GetProperty("cpu_info").GetString());
        Assert.Equal(["AVX2", "FMA"], pp.GetProperty("cpu_isa").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("CPU", pp.GetProperty("backends").GetString());
        Assert.Equal("2025-01-02T03:04:05Z", pp.GetProperty("test_time").GetString());
        Assert.False(string.IsNullOrEmpty(pp.GetProperty("edgelm_version").GetString()));

        // tg128: 128 tokens in 4 s, 4 s, 2 s -> 32, 32, 64 t/s
        Assert.Equal([32.0, 32.0, 64.0], tests[1].GetProperty("samples_ts").EnumerateArray().Select(e => e.GetDouble()));
        Assert.Equal(128.0 / 3.0, tests[1].GetProperty("avg_ts").GetDouble(), 9);
    }

    [Fact]
    public void CsvHasAHeaderAndOneRowPerTestThatParseBack()
    {
        using var ms = new MemoryStream();
        BenchReport.WriteCsv(ms, Model, Cpu, Results);
        var rows = ParseCsv(Encoding.UTF8.GetString(ms.ToArray()));
        Assert.Equal(3, rows.Count);
        var header = rows[0];
        Assert.All(rows, r => Assert.Equal(header.Count, r.Count));
        string Field(int row, string name) => rows[row][header.IndexOf(name)];
        Assert.Equal("pp512", Field(1, "test"));
        Assert.Equal("tg128", Field(2, "test"));
        Assert.Equal(Cpu.ModelName, Field(1, "cpu_info")); // commas and quotes survive
        Assert.Equal("2000000000,1000000000", Field(1, "samples_ns"));
        Assert.Equal(384.0, double.Parse(Field(1, "avg_ts"), System.Globalization.CultureInfo.InvariantCulture), 9);
        Assert.Equal("2", Field(2, "n_threads"));
    }

    [Fact]
    public void MarkdownRowsLineUpWithTheHeaderLikeLlamaBench()
    {
        string table = BenchReport.Markdown(Model, Results);
        var lines = table.Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        Assert.All(lines, l => Assert.Equal(lines[0].Length, l.Length));
        Assert.Contains("| model ", lines[0]);
        Assert.Contains("t/s |", lines[0]);
        Assert.DoesNotContain("type_kv", lines[0]);
        Assert.Contains("pp512", lines[2]);
        Assert.Contains("384.00 ± 181.02", lines[2]);
        Assert.Contains("400.00 MiB", lines[2]);
        Assert.Contains("494.03 M", lines[2]);
        Assert.Contains("qwen2 0.5B Q4_K - Medium", lines[2]);

        string withKv = BenchReport.Markdown(Model, [Result(new BenchTest(16, 0, 1), [1000], KvCacheType.F16)]);
        Assert.Contains("type_kv", withKv);
        Assert.Contains("f16", withKv);
    }

    [Theory]
    [InlineData(1L, "F16")]
    [InlineData(15L, "Q4_K - Medium")]
    [InlineData(7L, "Q8_0")]
    [InlineData(32L, "BF16")]
    [InlineData(1024L + 18, "Q6_K (guessed)")]
    [InlineData(999L, null)]
    public void FileTypesAreNamedLikeLlamaCpp(long fileType, string? expected) =>
        Assert.Equal(expected, BenchModelInfo.FileTypeName(fileType));

    [Fact]
    public void SizesAndLabelsAreFormattedLikeLlamaBench()
    {
        Assert.Equal("942.43 MiB", BenchReport.FormatSize(988_208_640));
        Assert.Equal("1.50 GiB", BenchReport.FormatSize(3L << 29));
        Assert.Equal("1.54 B", BenchReport.FormatParams(1_543_714_304));
        Assert.Equal("0.5B", BenchModelInfo.SizeLabel(494_032_768));
        Assert.Equal("1.5B", BenchModelInfo.SizeLabel(1_543_714_304));
        Assert.Equal("25M", BenchModelInfo.SizeLabel(25_000_000));
    }

    /// <summary>A minimal RFC 4180 reader, independent of the writer.</summary>
    private static List<List<string>> ParseCsv(string text)
    {
        var rows = new List<List<string>>();
        var row = new List<string>();
        var field = new StringBuilder();
        bool quoted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else field.Append(c);
            }
            else if (c == '"') quoted = true;
            else if (c == ',') { row.Add(field.ToString()); field.Clear(); }
            else if (c == '\n') { row.Add(field.ToString()); field.Clear(); rows.Add(row); row = []; }
            else field.Append(c);
        }
        Assert.Empty(row);
        return rows;
    }
}
