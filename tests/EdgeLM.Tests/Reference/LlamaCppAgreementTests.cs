using System.Diagnostics;
using System.Runtime.InteropServices;
using EdgeLM.Compression;
using EdgeLM.Compression.Methods;
using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;
using Xunit;

namespace EdgeLM.Tests.Reference;

/// <summary>
/// EdgeLM against llama.cpp (the prebuilt v0.5.0 libraries of node-llama-cpp, driven by tools/llama-reference's
/// llama-logits) on the same GGUF files: files written by llama.cpp's own gguf-py in each Qwen family's layout, and
/// files EdgeLM wrote and quantized itself. See docs/REFERENCE-ENGINE.md for the tolerances and measured numbers.
/// In the Kernels category so that scripts/test.sh also runs them with AVX-512 and AVX2 turned off: every ISA path of
/// EdgeLM's kernels against the same llama.cpp logits.
/// </summary>
[Trait("Category", "Kernels")]
public sealed class LlamaCppAgreementTests(LlamaCppFixture fixture) : IClassFixture<LlamaCppFixture>
{
    public static TheoryData<string, string> GgufPyModels()
    {
        var data = new TheoryData<string, string>();
        foreach (var (family, type) in LlamaCppFixture.GgufPyVariants) data.Add(family, type);
        return data;
    }

    public static TheoryData<string, string, string> EdgeLmQuantizedModels()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var (family, type, method) in LlamaCppFixture.EdgeLmVariants) data.Add(family, type, method);
        return data;
    }

    /// <summary>Issue 7: a model written by an independent tool in the family's GGUF layout.</summary>
    [Theory]
    [MemberData(nameof(GgufPyModels))]
    public void GgufPyModelAgreesWithLlamaCpp(string family, string type)
    {
        if (!fixture.Available(out string? reason)) { SkipOrFail(reason); return; }
        if (fixture.GgufPyError != null) { SkipOrFail(fixture.GgufPyError); return; }
        string path = fixture.GgufPyModel(family, type);
        var agreement = Compare(path, LlamaCppFixture.QwenTokenIds);
        agreement.AssertWithin(LogitTolerance.For(type), $"{family} {type} (gguf-py)");
    }

    /// <summary>Issue 4: EdgeLM's own GGUF writer and quantizer; llama.cpp must load the file and agree.</summary>
    [Theory]
    [MemberData(nameof(EdgeLmQuantizedModels))]
    public void EdgeLmQuantizedModelAgreesWithLlamaCpp(string family, string type, string method)
    {
        if (!fixture.Available(out string? reason)) { SkipOrFail(reason); return; }
        string path = fixture.EdgeLmModel(family, type, method);
        using (var model = ModelLoader.Load(path))
        {
            // Without this, a shape the k-quants cannot take would silently fall back and test nothing new.
            var expected = LlamaCppFixture.MainTensorType(type);
            Assert.True(model.Tensors.Values.Any(t => t.Type == expected),
                $"{Path.GetFileName(path)} holds no {expected} tensor: {string.Join(", ", model.Tensors.Values.Select(t => t.Type).Distinct())}");
        }
        var agreement = Compare(path, LlamaCppFixture.SmallVocabTokenIds);
        agreement.AssertWithin(LogitTolerance.For(type), $"{family} {type} {method} (EdgeLM quantize)");
    }

    /// <summary>Hard strings: CJK, emoji, accents, digits runs, contractions, whitespace runs, special tokens.</summary>
    private static readonly string[] TokenizerTexts =
    [
        "Hello world",
        "  leading spaces and trailing\t\n\n",
        "数字123456789 and émojis 🦙🚀 naïve café",
        "<|im_start|>user\nwhat's 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "don't won't I'M we've   \r\n x",
        "def f(x):\n\treturn x**2  # комментарий\n",
    ];

    [Fact]
    public void TokenizerAgreesWithLlamaCpp()
    {
        if (!fixture.Available(out string? reason)) { SkipOrFail(reason); return; }
        if (fixture.GgufPyError != null) { SkipOrFail(fixture.GgufPyError); return; }
        string path = fixture.GgufPyModel("qwen2", "q8_0");
        int[][] reference = LlamaReference.Tokenize(fixture.Binary!, path, TokenizerTexts);
        using var model = ModelLoader.Load(path);
        var tokenizer = ModelTokenizers.Require(model);
        for (int i = 0; i < TokenizerTexts.Length; i++)
            Assert.True(reference[i].SequenceEqual(tokenizer.Encode(TokenizerTexts[i])),
                $"'{TokenizerTexts[i]}': llama.cpp [{string.Join(',', reference[i])}], EdgeLM [{string.Join(',', tokenizer.Encode(TokenizerTexts[i]))}]");
    }

    [Fact]
    public void LlamaLogitsRejectsBadInputWithOneLine()
    {
        if (!fixture.Available(out string? reason)) { SkipOrFail(reason); return; }
        string path = fixture.EdgeLmModel("qwen2", "q8_0", "rtn");
        foreach (string[] args in new[]
        {
            new[] { "-m", path, "--ids", "1,x,3", "-o", Path.Combine(fixture.Dir, "bad.bin") },
            new[] { "-m", path, "--ids", "999999", "-o", Path.Combine(fixture.Dir, "bad.bin") },
            new[] { "-m", Path.Combine(fixture.Dir, "missing.gguf"), "--ids", "1", "-o", Path.Combine(fixture.Dir, "bad.bin") },
        })
        {
            var (exit, _, error) = LlamaReference.Run(fixture.Binary!, args);
            Assert.NotEqual(0, exit);
            Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.StartsWith("llama-logits: error:", error, StringComparison.Ordinal);
        }
    }

    private LogitAgreement Compare(string path, int[] ids)
    {
        float[] reference = LlamaReference.Logits(fixture.Binary!, path, ids, Path.Combine(fixture.Dir, "logits.bin"));
        float[] ours = EdgeLmLogits(path, ids, out int vocab);
        Assert.Equal((long)ids.Length * vocab, reference.LongLength);
        return LogitAgreement.Measure(reference, ours, ids.Length, vocab);
    }

    /// <summary>Teacher-forced logits through the library, exactly as `edgelm logits` computes them.</summary>
    internal static float[] EdgeLmLogits(string path, int[] ids, out int vocab)
    {
        using var model = ModelLoader.Load(path);
        vocab = model.Config.VocabSize;
        using var session = new InferenceSession(model.Config, model.Weights, ids.Length, LlamaReference.Threads);
        var logits = new float[ids.Length * vocab];
        session.ForwardAll(ids, logits);
        return logits;
    }

    private static void SkipOrFail(string? reason)
    {
        Assert.True(Environment.GetEnvironmentVariable("CI") != "true", reason);
        // Local run without the reference engine (tools/llama-reference/setup.sh not run): nothing to compare against.
    }
}

/// <summary>Allowed relative error (max |a - b| / max |a| over all positions) per storage type, with headroom over the measured values.</summary>
internal static class LogitTolerance
{
    public static double For(string type) => type switch
    {
        // Same F32 weights: only summation order differs (measured ~5e-7).
        "f32" => 1e-5,
        // llama.cpp and EdgeLM both round activations to the weights' type (F16/BF16) before the dot product;
        // the rounding of intermediate values differs slightly (measured <= 8e-4 for f16).
        "f16" or "bf16" => 1e-2,
        // Both quantize activations to Q8_0/Q8_K; results are usually bit-identical up to summation order, but an
        // activation that lands on a rounding boundary flips one int8 step, which moves a few logits by ~1e-2.
        _ => 3e-2,
    };
}

internal readonly record struct LogitAgreement(double MaxRelative, double RmsRelative, int Positions, int Top1Mismatches, int NearTies, string Detail)
{
    /// <summary>
    /// Relative error = max |reference - ours| / max |reference| (and the RMS analogue, reported only). The top-1
    /// token must agree at every position unless the reference's own top-2 gap there is within the tolerated error,
    /// where either choice is numerically justified (counted as a near-tie).
    /// </summary>
    public static LogitAgreement Measure(float[] reference, float[] ours, int positions, int vocab)
    {
        double maxDiff = 0, maxRef = 0, sumSqDiff = 0, sumSqRef = 0;
        for (long i = 0; i < reference.LongLength; i++)
        {
            double d = Math.Abs((double)reference[i] - ours[i]);
            if (!double.IsFinite(d)) d = double.PositiveInfinity;
            maxDiff = Math.Max(maxDiff, d);
            maxRef = Math.Max(maxRef, Math.Abs(reference[i]));
            sumSqDiff += d * d;
            sumSqRef += (double)reference[i] * reference[i];
        }
        double maxRelative = maxRef > 0 ? maxDiff / maxRef : double.PositiveInfinity;
        int mismatches = 0, nearTies = 0;
        string detail = "";
        for (int p = 0; p < positions; p++)
        {
            var refRow = reference.AsSpan(p * vocab, vocab);
            var ourRow = ours.AsSpan(p * vocab, vocab);
            int refTop = ArgMax(refRow), ourTop = ArgMax(ourRow);
            if (refTop == ourTop) continue;
            // Gap in the reference between its top token and ours, measured against the largest difference seen.
            double gap = refRow[refTop] - refRow[ourTop];
            if (gap <= 2 * maxDiff) { nearTies++; continue; }
            mismatches++;
            if (detail.Length == 0) detail = $"position {p}: llama.cpp top-1 {refTop} ({refRow[refTop]:G5}), EdgeLM {ourTop} ({ourRow[ourTop]:G5})";
        }
        return new(maxRelative, sumSqRef > 0 ? Math.Sqrt(sumSqDiff / sumSqRef) : double.PositiveInfinity, positions, mismatches, nearTies, detail);
    }

    public void AssertWithin(double tolerance, string what)
    {
        string summary = $"{what}: max rel {MaxRelative:E2} (allowed {tolerance:E0}), rms rel {RmsRelative:E2}, top-1 mismatches {Top1Mismatches}/{Positions}, near-ties {NearTies}";
        Console.WriteLine(summary); // `dotnet test --logger "console;verbosity=detailed"` shows the measured numbers
        Assert.True(MaxRelative <= tolerance, summary);
        Assert.True(Top1Mismatches == 0, summary + "; " + Detail);
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}

/// <summary>Runs tools/llama-reference's llama-logits.</summary>
internal static class LlamaReference
{
    public static int Threads { get; } = Math.Clamp(Environment.ProcessorCount, 1, 4);

    /// <summary>$EDGELM_LLAMA_REFERENCE (a folder holding the built llama-logits), else tools/llama-reference/build.</summary>
    public static string BuildDir { get; } =
        Environment.GetEnvironmentVariable("EDGELM_LLAMA_REFERENCE") is { Length: > 0 } env ? env
            : Path.Combine(TestPaths.RepoRoot, "tools", "llama-reference", "build");

    public static string BinaryPath => Path.Combine(BuildDir, "llama-logits");

    public static float[] Logits(string binary, string model, int[] ids, string output)
    {
        var (exit, _, error) = Run(binary, ["-m", model, "--ids", string.Join(',', ids), "-o", output, "-t", Threads.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        Assert.True(exit == 0, $"llama.cpp failed on {Path.GetFileName(model)}: {error.Trim()}");
        byte[] bytes = File.ReadAllBytes(output);
        File.Delete(output);
        return MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }

    /// <summary>llama.cpp's token ids of each text (special tokens parsed, no BOS added), one vocabulary load for all.</summary>
    public static int[][] Tokenize(string binary, string model, IReadOnlyList<string> texts)
    {
        var (exit, output, error) = Run(binary, ["-m", model, .. texts.SelectMany(t => new[] { "--tokenize", t })]);
        Assert.True(exit == 0, $"llama.cpp could not tokenize: {error.Trim()}");
        string[] lines = output.Split('\n');
        Assert.True(lines.Length >= texts.Count, $"llama.cpp printed {lines.Length} lines for {texts.Count} texts");
        return lines.Take(texts.Count).Select(line => line.Split(',', StringSplitOptions.RemoveEmptyEntries)
            .Select(s => int.Parse(s, System.Globalization.CultureInfo.InvariantCulture)).ToArray()).ToArray();
    }

    public static (int Exit, string Output, string Error) Run(string program, IEnumerable<string> args, int timeoutSeconds = 120)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in args) psi.ArgumentList.Add(arg);
        using var process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {program}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeoutSeconds * 1000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(program)} did not finish in {timeoutSeconds} s");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}

/// <summary>
/// Writes every model the class compares, once: the gguf-py models (tools/llama-reference/write_tiny_models.py)
/// and EdgeLM's synthetic models quantized by EdgeLM to each file type.
/// </summary>
public sealed class LlamaCppFixture : IDisposable
{
    public static readonly string[] Families = ["qwen", "qwen2", "qwen3"];
    /// <summary>F32 (tightest check), F16 and Q8_0 for every family; Q4_0 for Qwen2 only, to keep the class fast.</summary>
    public static readonly (string Family, string Type)[] GgufPyVariants =
        [.. Families.SelectMany(f => new[] { (f, "f32"), (f, "f16"), (f, "q8_0") }), ("qwen2", "q4_0")];

    /// <summary>Every file type on Qwen2; the k-quants and Q8_0 on the other two; plus non-RTN methods.</summary>
    public static readonly (string Family, string Type, string Method)[] EdgeLmVariants =
    [
        .. new[] { "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q4_k_m", "q4_k_s", "q6_k" }.Select(t => ("qwen2", t, "rtn")),
        .. new[] { "q8_0", "q4_k_m", "q6_k" }.SelectMany(t => new[] { ("qwen", t, "rtn"), ("qwen3", t, "rtn") }),
        ("qwen2", "q4_k_m", "mse"), ("qwen2", "q4_0", "gptq"), ("qwen3", "q4_k_s", "gptq"),
    ];

    /// <summary>Ids of a chat-formatted English sentence under the real Qwen vocabulary (any valid ids would do).</summary>
    public static readonly int[] QwenTokenIds =
        [151644, 872, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 77091, 198, 9707, 1879, 11, 220, 108386, 0, 40, 1079, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 2585, 646];

    public static readonly int[] SmallVocabTokenIds = [1, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100, 500, 256, 300, 7, 255, 44, 46, 13, 0, 420, 10, 511];

    private const int SmallVocab = 512;

    public string Dir { get; } = TestPaths.NewTempDir();
    public string? Binary { get; }
    public string? GgufPyError { get; }
    private readonly string? unavailable;
    private readonly Dictionary<string, string> edgeLmModels = [];

    public LlamaCppFixture()
    {
        if (!File.Exists(LlamaReference.BinaryPath))
        {
            unavailable = $"llama.cpp reference not built: {LlamaReference.BinaryPath} is missing; run bash tools/llama-reference/setup.sh (scripts/test.sh does)";
            return;
        }
        Binary = LlamaReference.BinaryPath;
        GgufPyError = WriteGgufPyModels();
        WriteEdgeLmModels();
    }

    public bool Available(out string? reason)
    {
        reason = unavailable;
        return unavailable == null;
    }

    public string GgufPyModel(string family, string type) => Path.Combine(Dir, "gguf-py", $"{family}-{type}.gguf");

    public string EdgeLmModel(string family, string type, string method) => edgeLmModels[$"{family}-{type}-{method}"];

    /// <summary>The tensor type a file type must produce somewhere in a 256-wide model.</summary>
    public static GgmlType MainTensorType(string type) => type switch
    {
        "f16" => GgmlType.F16,
        "bf16" => GgmlType.BF16,
        "q8_0" => GgmlType.Q8_0,
        "q4_0" => GgmlType.Q4_0,
        "q4_1" => GgmlType.Q4_1,
        "q5_0" => GgmlType.Q5_0,
        "q4_k_m" or "q4_k_s" => GgmlType.Q4_K,
        "q6_k" => GgmlType.Q6_K,
        _ => throw new ArgumentException($"no expected tensor type for '{type}'"),
    };

    private string? WriteGgufPyModels()
    {
        string script = Path.Combine(TestPaths.RepoRoot, "tools", "llama-reference", "write_tiny_models.py");
        string ggufPy = Path.Combine(LlamaReference.BuildDir, "src", "gguf-py");
        // Debian's python3-numpy lives with /usr/bin/python3, which a pyenv or venv python3 on PATH may not see.
        string python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        try
        {
            var (exit, _, error) = LlamaReference.Run(python,
                [script, "--out", Path.Combine(Dir, "gguf-py"), "--tokenizer", TestPaths.QwenTokenizerJson, "--gguf-py", ggufPy,
                 "--types", string.Join(',', GgufPyVariants.Select(v => v.Family + ":" + v.Type)), "--families", string.Join(',', Families)],
                timeoutSeconds: 300);
            return exit == 0 ? null : $"write_tiny_models.py failed: {error.Trim()}";
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"cannot run {python}: {e.Message}";
        }
    }

    private void WriteEdgeLmModels()
    {
        foreach (string family in Families)
        {
            // The 256-wide presets, with a 512-token byte-level vocabulary so that quantizing is instant.
            var config = ModelPresets.Get("tiny-" + family) with { VocabSize = SmallVocab, ContextLength = 1024 };
            string source = Path.Combine(Dir, $"edgelm-{family}-f32.gguf");
            SyntheticModel.WriteGguf(source, config, GgmlType.F32, seed: 11, tokenizer: null);
            using var model = ModelLoader.Load(source);
            foreach (var (f, type, method) in EdgeLmVariants)
            {
                if (f != family) continue;
                string output = Path.Combine(Dir, $"edgelm-{family}-{type}-{method}.gguf");
                CalibrationSet? calibration = TensorQuantizers.NeedsCalibration(method)
                    ? CalibrationSet.Collect(model, CalibrationTokens(), 64, 0, 256, bos: null, threads: LlamaReference.Threads)
                    : null;
                ModelQuantizer.Quantize(model, output, new QuantizeOptions
                {
                    FileType = LlamaFileTypes.Parse(type),
                    Quantizer = TensorQuantizers.Create(method, calibration),
                    Threads = LlamaReference.Threads,
                });
                edgeLmModels[$"{family}-{type}-{method}"] = output;
            }
        }
    }

    private static int[] CalibrationTokens()
    {
        var random = new Random(5);
        return Enumerable.Range(0, 256).Select(_ => random.Next(SmallVocab)).ToArray();
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}
