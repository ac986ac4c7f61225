using System.Text.Json;
using EdgeLM.Cli;
using EdgeLM.Synthetic;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;
using EdgeLM.Tokenization;
using Xunit;

namespace EdgeLM.Tests.Evaluation;

public sealed class EvalCliTests
{
    [Fact]
    public void EvalWritesLmEvalResultsAndSamples()
    {
        string dir = TestPaths.NewTempDir();
        string model = Path.Combine(dir, "m.gguf");
        var config = ModelPresets.Get("tiny") with { VocabSize = 512, ContextLength = 256, LayerCount = 1 };
        SyntheticModel.WriteGguf(model, config, GgmlType.F32, seed: 3, tokenizer: BpeTokenizer.CreateByteLevel(512));
        string results = Path.Combine(dir, "results.json"), samples = Path.Combine(dir, "samples.jsonl");
        var err = new StringWriter();
        int code = Program.Run(["eval", "-m", model, "--tasks", "piqa,arc_challenge", "--data", ReferenceParityTests.DatasetsDir,
            "--limit", "3", "--ctx", "256", "-t", "1", "-o", results, "--log-samples", samples], TextWriter.Null, err);
        Assert.True(code == 0, err.ToString());

        using var json = JsonDocument.Parse(File.ReadAllBytes(results));
        var piqa = json.RootElement.GetProperty("results").GetProperty("piqa");
        double acc = piqa.GetProperty("acc,none").GetDouble();
        Assert.Contains(acc, new[] { 0, 1 / 3.0, 2 / 3.0, 1 });
        Assert.Equal(3, json.RootElement.GetProperty("n-samples").GetProperty("arc_challenge").GetProperty("effective").GetInt32());
        Assert.Equal(1172, json.RootElement.GetProperty("n-samples").GetProperty("arc_challenge").GetProperty("original").GetInt32());
        Assert.Equal(0, json.RootElement.GetProperty("n-shot").GetProperty("piqa").GetInt32());

        var lines = File.ReadAllLines(samples);
        Assert.Equal(6, lines.Length);
        using var first = JsonDocument.Parse(lines[0]);
        var args = first.RootElement.GetProperty("arguments");
        Assert.Equal(2, args.GetArrayLength());
        Assert.StartsWith("Question: ", args[0][0].GetString());
        Assert.StartsWith(" ", args[0][1].GetString());
        var resp = first.RootElement.GetProperty("filtered_resps")[0];
        Assert.True(double.Parse(resp[0].GetString()!, System.Globalization.CultureInfo.InvariantCulture) < 0);
        Assert.Contains(resp[1].GetString(), new[] { "True", "False" });
        // The logged per-item acc agrees with argmax of the logged log-likelihoods.
        var lls = first.RootElement.GetProperty("filtered_resps").EnumerateArray()
            .Select(r => double.Parse(r[0].GetString()!, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        int gold = first.RootElement.GetProperty("target").GetInt32();
        Assert.Equal(Array.IndexOf(lls, lls.Max()) == gold ? 1 : 0, first.RootElement.GetProperty("acc").GetDouble());
    }

    [Fact]
    public void MissingDataNamesTheFile()
    {
        string dir = TestPaths.NewTempDir();
        var err = new StringWriter();
        int code = Program.Run(["eval", "-m", "/nonexistent.gguf", "--tasks", "hellaswag", "--data", dir], TextWriter.Null, err);
        Assert.Equal(1, code);
        Assert.Contains(Path.Combine(dir, "hellaswag", "hellaswag_val.jsonl"), err.ToString());
    }

    [Fact]
    public void UnknownTaskIsAUsageError()
    {
        var err = new StringWriter();
        Assert.Equal(2, Program.Run(["eval", "-m", "x", "--tasks", "mmlu"], TextWriter.Null, err));
        Assert.Contains("unknown task 'mmlu'", err.ToString());
    }
}
