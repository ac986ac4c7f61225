using System.Text.Json;
using EdgeLM.Evaluation;
using EdgeLM.Tests.Support;
using Xunit;

namespace EdgeLM.Tests.Evaluation;

/// <summary>
/// EdgeLM's requests against tests/data/eval/reference.json, written by tools/eval-reference/reference.py: an
/// independent Python implementation of lm-eval's doc_to_text / doc_to_choice / preprocess and random.Random.
/// </summary>
public sealed class ReferenceParityTests
{
    private static readonly Lazy<JsonDocument> Reference = new(() => JsonDocument.Parse(File.ReadAllBytes(TestPaths.TestData("eval", "reference.json"))));
    private static JsonElement Root => Reference.Value.RootElement;

    internal static string DatasetsDir => Path.Combine(TestPaths.SharedDir, "datasets");
    internal static string HellaSwagSample => TestPaths.TestData("eval", "hellaswag_sample.jsonl");

    internal static List<EvalDoc> Docs(string task) => task == "hellaswag"
        ? LoadHellaSwagSample()
        : TaskDataset.Load(DatasetsDir, EvalTask.Get(task), EvalTask.Get(task).EvalSplit);

    internal static List<EvalDoc> LoadHellaSwagSample()
    {
        string dir = TestPaths.NewTempDir();
        Directory.CreateDirectory(Path.Combine(dir, "hellaswag"));
        File.Copy(HellaSwagSample, Path.Combine(dir, "hellaswag", "hellaswag_val.jsonl"));
        var task = EvalTask.Get("hellaswag");
        return TaskDataset.Load(dir, task, task.EvalSplit);
    }

    [Theory]
    [InlineData("arc_challenge", 40)]
    [InlineData("piqa", 40)]
    [InlineData("hellaswag", 15)]
    public void RequestsMatchTheReferenceStringByString(string task, int expectedCount)
    {
        var expected = Root.GetProperty("requests").EnumerateArray().Where(r => r.GetProperty("task").GetString() == task).ToArray();
        Assert.Equal(expectedCount, expected.Length);
        var docs = Docs(task);
        foreach (var e in expected)
        {
            int id = e.GetProperty("doc_id").GetInt32();
            var doc = docs[id];
            var (context, continuations) = Evaluator.Requests(doc);
            Assert.Equal(e.GetProperty("context").GetString(), context);
            Assert.Equal(e.GetProperty("continuations").EnumerateArray().Select(x => x.GetString()!).ToArray(), continuations);
            Assert.Equal(e.GetProperty("gold").GetInt32(), doc.Gold);
            Assert.Equal(e.GetProperty("choice_lengths").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                doc.Choices.Select(PythonText.CodePointLength).ToArray());
        }
    }

    [Fact]
    public void FewShotContextsMatchLmEvalSampler()
    {
        var docs = Docs("arc_challenge");
        var sampler = new FewShotSampler(docs.GetRange(100, 200), sameSplitAsEval: false);
        foreach (var e in Root.GetProperty("fewshot").EnumerateArray())
        {
            var doc = docs[e.GetProperty("doc_id").GetInt32()];
            var (context, _) = Evaluator.Requests(doc, sampler.GetContext(doc, 3));
            Assert.Equal(e.GetProperty("context").GetString(), context);
        }
    }

    [Fact]
    public void PythonRandomSampleMatchesCPython()
    {
        var random = new PythonRandom(1234);
        foreach (var e in Root.GetProperty("python_random").EnumerateArray())
        {
            int n = e.GetProperty("n").GetInt32(), k = e.GetProperty("k").GetInt32();
            Assert.Equal(e.GetProperty("sample").EnumerateArray().Select(x => x.GetInt32()).ToArray(), random.Sample(n, k));
        }
    }

    [Fact]
    public void TrailingWhitespaceSplitMatchesEncodePair()
    {
        foreach (var e in Root.GetProperty("encode_pair").EnumerateArray())
        {
            var (ctx, cont) = RequestEncoding.SplitTrailingWhitespace(e.GetProperty("context").GetString()!, e.GetProperty("continuation").GetString()!);
            Assert.Equal(e.GetProperty("split_context").GetString(), ctx);
            Assert.Equal(e.GetProperty("split_continuation").GetString(), cont);
        }
    }

    [Fact]
    public void FloatReprMatchesPython()
    {
        foreach (var e in Root.GetProperty("float_repr").EnumerateArray())
            Assert.Equal(e.GetProperty("repr").GetString(), PythonText.FloatRepr(e.GetProperty("value").GetDouble()));
    }
}
