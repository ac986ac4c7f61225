using EdgeLM.Compression.Pruning;
using EdgeLM.Formats.Gguf;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Compression.Toolkit;

public sealed class PruneFixture : IDisposable
{
    public static readonly int[] NearIdentityBlocks = [1, 4];
    public ToyModel Toy { get; } = new() { NearIdentity = new HashSet<int>(NearIdentityBlocks) };
    public string Dir { get; } = TestPaths.NewTempDir();
    public string ModelPath { get; }
    public int[] Calibration { get; }

    public PruneFixture()
    {
        ModelPath = Toy.WriteGguf(Path.Combine(Dir, "toy.gguf"));
        using var model = ModelLoader.Load(ModelPath);
        Calibration = ToyModel.Sample(model, 128, seed: 3);
    }

    public string NewPath(string name) => Path.Combine(Dir, Guid.NewGuid().ToString("N")[..8] + "-" + name);

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

public class PruneTests(PruneFixture fixture) : IClassFixture<PruneFixture>
{
    private static readonly int[] Probe = [256, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100];

    private PruneResult Select(PruneMethod method, int remove = 2)
    {
        using var model = ModelLoader.Load(fixture.ModelPath);
        return LayerPruner.Select(model.Config, model.Tensors, fixture.Calibration,
            new PruneOptions { Method = method, RemoveCount = remove, Context = 64, Threads = 1 });
    }

    [Fact]
    public void ShortGptRemovesTheNearIdentityBlocks()
    {
        var result = Select(PruneMethod.ShortGpt);
        Assert.Equal(PruneFixture.NearIdentityBlocks, result.Removed);
        var scores = Assert.Single(result.Rounds).Scores;
        Assert.Equal(6, scores.Count);
        double worstKept = scores.Where(s => !result.Removed.Contains(s.Block)).Min(s => s.Score);
        double bestRemoved = scores.Where(s => result.Removed.Contains(s.Block)).Max(s => s.Score);
        // Not a near tie: the near-identity blocks' influence is orders of magnitude below the others'.
        Assert.True(bestRemoved * 100 < worstKept, $"removed max {bestRemoved}, kept min {worstKept}");
    }

    [Fact]
    public void SlebRemovesTheNearIdentityBlocksGreedily()
    {
        var result = Select(PruneMethod.Sleb);
        Assert.Equal(PruneFixture.NearIdentityBlocks, result.Removed);
        Assert.Equal(2, result.Rounds.Count);
        Assert.Equal(6, result.Rounds[0].Scores.Count);
        Assert.Equal(5, result.Rounds[1].Scores.Count);
        // Removing a near-identity block leaves the calibration perplexity where it was; any other block raises it.
        foreach (var s in result.Rounds[0].Scores)
        {
            if (PruneFixture.NearIdentityBlocks.Contains(s.Block))
                Assert.True(Math.Abs(s.Score / result.BaselinePerplexity - 1) < 1e-3, $"block {s.Block}: {s.Score} vs {result.BaselinePerplexity}");
            else
                Assert.True(s.Score > result.BaselinePerplexity * 1.01, $"block {s.Block}: {s.Score} vs {result.BaselinePerplexity}");
        }
    }

    [Fact]
    public void PrunedGgufHasRenumberedBlocksAndTheLogitsOfTheKeptBlocks()
    {
        string output = fixture.NewPath("pruned.gguf");
        using (var model = ModelLoader.Load(fixture.ModelPath))
            Assert.Null(LayerPruner.Write(model, [1, 4], output, folder: false));

        using (var gguf = GgufFile.Open(output))
        {
            Assert.Equal(4, gguf.Metadata.GetInteger("qwen2.block_count"));
            Assert.DoesNotContain(gguf.Tensors.Keys, k => k.StartsWith("blk.4.") || k.StartsWith("blk.5."));
            Assert.True(gguf.Metadata.Contains("tokenizer.ggml.tokens"));
        }

        // An independently built model of blocks 0, 2, 3, 5 only, and the original with the blocks skipped by a view.
        string expectedPath = fixture.Toy.WriteGguf(fixture.NewPath("kept.gguf"), [0, 2, 3, 5]);
        float[] pruned = ToyModel.Logits(output, Probe);
        Assert.Equal(ToyModel.Logits(expectedPath, Probe), pruned);
        using var original = ModelLoader.Load(fixture.ModelPath);
        var (config, weights) = LayerRemoval.View(original.Config, original.Tensors, [1, 4]);
        Assert.Equal(4, config.LayerCount);
        Assert.Equal(ToyModel.Logits(config, weights, Probe), pruned);
        Assert.NotEqual(ToyModel.Logits(original.Config, original.Weights, Probe), pruned);
    }

    [Fact]
    public void F16ModelPrunesToAHuggingFaceFolderThatLoads()
    {
        var toy = new ToyModel { NearIdentity = fixture.Toy.NearIdentity, WeightType = GgmlType.F16 };
        string input = toy.WriteGguf(fixture.NewPath("f16.gguf"));
        string folder = fixture.NewPath("pruned-hf");
        using (var model = ModelLoader.Load(input))
            Assert.NotNull(LayerPruner.Write(model, [0, 4], folder, folder: true)); // no tokenizer.json from a GGUF: a warning

        using var hf = ModelLoader.Load(folder);
        Assert.Equal("hf", hf.Format);
        Assert.Equal(4, hf.Config.LayerCount);
        Assert.Equal(GgmlType.F16, hf.Tensors["blk.3.ffn_down.weight"].Type);
        string expected = toy.WriteGguf(fixture.NewPath("kept-f16.gguf"), [1, 2, 3, 5]);
        Assert.Equal(ToyModel.Logits(expected, Probe), ToyModel.Logits(folder, Probe));
        Assert.Empty(Directory.GetFileSystemEntries(fixture.Dir, "*pruned-hf.tmp-*"));
    }

    [Fact]
    public void RemovalArgumentsAreChecked()
    {
        Assert.Contains("at least one must remain", Assert.Throws<ArgumentException>(() => LayerRemoval.NewIndices(3, [0, 1, 2])).Message);
        Assert.Contains("does not exist", Assert.Throws<ArgumentException>(() => LayerRemoval.NewIndices(3, [3])).Message);
        using var model = ModelLoader.Load(fixture.ModelPath);
        var e = Assert.Throws<ArgumentException>(() => LayerPruner.Select(model.Config, model.Tensors, fixture.Calibration,
            new PruneOptions { Method = PruneMethod.ShortGpt, RemoveCount = 6, Context = 64 }));
        Assert.Contains("remove between 1 and 5", e.Message);
        e = Assert.Throws<ArgumentException>(() => LayerPruner.Select(model.Config, model.Tensors, fixture.Calibration.AsSpan(0, 10),
            new PruneOptions { Method = PruneMethod.Sleb, RemoveCount = 1, Context = 64 }));
        Assert.Contains("fewer than one window", e.Message);
    }

    [Fact]
    public void CliPrintsScoresAndWritesTheModel()
    {
        string calib = fixture.NewPath("calib.txt");
        File.WriteAllText(calib, string.Concat(Enumerable.Repeat("The quick brown fox jumps over the lazy dog. ", 8)));
        string output = fixture.NewPath("cli.gguf");
        var r = CliRunner.Run(["prune", "-m", fixture.ModelPath, "-o", output, "--remove", "2", "--method", "shortgpt", "--calib", calib, "--ctx", "64", "-t", "1"]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("removed blocks: 1, 4", r.StdOut);
        Assert.Equal(6, r.StdOut.Split('\n').Count(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\s+\d\s+\S+")));
        using var gguf = GgufFile.Open(output);
        Assert.Equal(4, gguf.Metadata.GetInteger("qwen2.block_count"));
    }

    [Theory]
    [InlineData("--method", "magic", "unknown pruning method")]
    [InlineData("--calib", "missing.txt", "calibration file not found")]
    [InlineData("--remove", "6", "remove between 1 and 5")]
    public void CliBadInputFailsInOneLineWithoutOutput(string option, string value, string message)
    {
        string calib = fixture.NewPath("calib.txt");
        File.WriteAllText(calib, new string('x', 300));
        string output = fixture.NewPath("bad.gguf");
        var args = new Dictionary<string, string> { ["--method"] = "sleb", ["--calib"] = calib, ["--remove"] = "1" };
        args[option] = option == "--calib" ? Path.Combine(fixture.Dir, value) : value;
        var r = CliRunner.Run(["prune", "-m", fixture.ModelPath, "-o", output, "--ctx", "64", .. args.SelectMany(kv => new[] { kv.Key, kv.Value })]);
        Assert.True(r.ExitCode != 0, r.ToString());
        Assert.Single(r.StdErr.Trim().Split('\n'));
        Assert.Contains(message, r.StdErr);
        Assert.Empty(Directory.GetFiles(fixture.Dir, Path.GetFileName(output) + "*"));
    }
}
