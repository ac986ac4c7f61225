using System.Text.Json;
using EdgeLM.Compression;
using EdgeLM.Compression.Comparison;
using EdgeLM.Evaluation;
using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Compression.Toolkit;

public class CompareTests(PruneFixture fixture) : IClassFixture<PruneFixture>
{
    private static ComparisonResult Compare(string reference, string candidate, int[] tokens, int ctx = 64)
    {
        using var r = ModelLoader.Load(reference);
        using var c = ModelLoader.Load(candidate);
        using var rs = new InferenceSession(r.Config, r.Weights, ctx, threads: 1);
        using var cs = new InferenceSession(c.Config, c.Weights, ctx, threads: 1);
        return ModelComparison.Run(new SessionLanguageModel(rs), new SessionLanguageModel(cs), tokens, ctx, bosId: null);
    }

    [Fact]
    public void ModelAgainstItselfHasZeroKlAndFullAgreement()
    {
        var result = Compare(fixture.ModelPath, fixture.ModelPath, fixture.Calibration);
        Assert.Equal(2, result.Chunks);
        Assert.Equal(2 * (64 - 1 - 32), result.ScoredTokens);
        Assert.Equal(0, result.KlMax);
        Assert.Equal(0, result.KlMean);
        Assert.Equal(1, result.SameTop);
        Assert.Equal(result.ReferencePerplexity, result.CandidatePerplexity);
        Assert.InRange(result.ReferencePerplexity, 1.0001, 320);
    }

    [Fact]
    public void KlDivergenceOrdersQuantizationTypes()
    {
        // Hidden and FFN sizes of 256 so that q4_k_m really uses k-quants.
        var toy = new ToyModel { Layers = 1, Hidden = 256, Ff = 256, Seed = 9 };
        string f32 = toy.WriteGguf(fixture.NewPath("order-f32.gguf"));
        int[] tokens;
        using (var m = ModelLoader.Load(f32)) tokens = ToyModel.Sample(m, 128, seed: 4);
        var kl = new Dictionary<string, ComparisonResult>();
        foreach (string type in new[] { "q8_0", "q4_k_m", "q4_0" })
        {
            string path = fixture.NewPath($"order-{type}.gguf");
            using (var m = ModelLoader.Load(f32))
                ModelQuantizer.Quantize(m, path, new QuantizeOptions { FileType = LlamaFileTypes.Parse(type), Threads = 2 });
            kl[type] = Compare(f32, path, tokens);
        }
        string summary = string.Join(", ", kl.Select(k => $"{k.Key}: KL {k.Value.KlMean:G3} top {k.Value.SameTop:P1}"));
        Assert.True(kl["q8_0"].KlMean * 3 < kl["q4_k_m"].KlMean, summary);
        Assert.True(kl["q4_k_m"].KlMean < kl["q4_0"].KlMean, summary);
        Assert.True(kl["q8_0"].SameTop >= kl["q4_0"].SameTop, summary);
        Assert.True(kl["q4_0"].KlMean > 0 && kl["q4_0"].KlMax >= kl["q4_0"].KlP99 && kl["q4_0"].KlP99 >= kl["q4_0"].KlMedian, summary);
    }

    [Fact]
    public void PercentileInterpolatesBetweenRanks()
    {
        double[] sorted = [0, 1, 2, 3, 4];
        Assert.Equal(2, ModelComparison.Percentile(sorted, 0.5));
        Assert.Equal(3.96, ModelComparison.Percentile(sorted, 0.99), 12);
        Assert.Equal(4, ModelComparison.Percentile(sorted, 1));
    }

    [Fact]
    public void CliPrintsJsonAndTable()
    {
        string text = fixture.NewPath("text.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("A model compared with itself agrees everywhere. ", 6)));
        var r = CliRunner.Run(["compare", "-m", fixture.ModelPath, "-m", fixture.ModelPath, "-f", text, "--ctx", "64", "--json", "-t", "1"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        using var json = JsonDocument.Parse(r.StdOut);
        Assert.Equal(0, json.RootElement.GetProperty("kld_mean").GetDouble());
        Assert.Equal(1, json.RootElement.GetProperty("same_top").GetDouble());
        Assert.Equal(4, json.RootElement.GetProperty("chunks").GetInt32());

        r = CliRunner.Run(["compare", "-m", fixture.ModelPath, "-m", fixture.ModelPath, "-f", text, "--ctx", "64", "--chunks", "1", "-t", "1"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("same top p", r.StdOut);
        Assert.Contains("100.000%", r.StdOut);
        Assert.Contains("mean KLD", r.StdOut);
    }

    [Fact]
    public void DifferentVocabulariesAreRejectedInOneLine()
    {
        string other = new ToyModel { Layers = 2, Vocab = 300 }.WriteGguf(fixture.NewPath("vocab300.gguf"));
        string text = fixture.NewPath("text.txt");
        File.WriteAllText(text, new string('a', 400));
        var r = CliRunner.Run(["compare", "-m", fixture.ModelPath, "-m", other, "-f", text, "--ctx", "64"]);
        Assert.True(r.ExitCode != 0, r.ToString());
        Assert.Single(r.StdErr.Trim().Split('\n'));
        Assert.Contains("different vocabularies (320 and 300 tokens)", r.StdErr);

        r = CliRunner.Run(["compare", "-m", fixture.ModelPath, "-f", text]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("give two models", r.StdErr);
    }
}
