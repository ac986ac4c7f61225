namespace EdgeLM.Evaluation;

/// <summary>
/// One evaluation item after the task's process_docs: the prompt text (doc_to_text), the answer choices
/// (doc_to_choice, without the target delimiter), the gold index (doc_to_target) and the document as lm-eval logs it.
/// </summary>
public sealed record EvalDoc(int DocId, string Query, IReadOnlyList<string> Choices, int Gold, string DocJson)
{
    /// <summary>Structural equality on the logged document, as lm-eval's "x != doc" on dicts.</summary>
    public bool SameDocument(EvalDoc other) => DocJson == other.DocJson;
}
