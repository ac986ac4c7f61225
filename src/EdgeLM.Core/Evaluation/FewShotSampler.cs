namespace EdgeLM.Evaluation;

/// <summary>
/// lm-eval's default ContextSampler: one random.Random(1234) per task, advanced by every item in evaluation order;
/// each item draws num_fewshot examples (one more when the few-shot split is the evaluated split), drops the item
/// itself, and formats text + " " + gold choice + "\n\n". Matches lm-eval when the few-shot file holds the split in
/// the Hugging Face row order and items are evaluated from the first (a --limit keeps that).
/// </summary>
public sealed class FewShotSampler(IReadOnlyList<EvalDoc> fewShotDocs, bool sameSplitAsEval, int seed = EvalTask.FewShotSeed)
{
    private readonly PythonRandom _random = new((ulong)seed);

    public string GetContext(EvalDoc doc, int numFewShot)
    {
        if (numFewShot == 0) return "";
        int draw = sameSplitAsEval ? numFewShot + 1 : numFewShot;
        if (draw > fewShotDocs.Count)
            throw new ArgumentException($"{numFewShot} few-shot examples requested but the few-shot split has {fewShotDocs.Count} items");
        var picked = _random.Sample(fewShotDocs.Count, draw);
        var text = new System.Text.StringBuilder();
        int used = 0;
        foreach (int index in picked)
        {
            var example = fewShotDocs[index];
            if (example.SameDocument(doc)) continue;
            if (used++ == numFewShot) break;
            text.Append(EvalTask.FewShotExample(example));
        }
        return text.ToString();
    }
}
