using EdgeLM.Tensors;

namespace EdgeLM.Tests.Tensors;

public class GgmlTypeTests
{
    [Theory]
    [InlineData(GgmlType.Q4_0, 18)]
    [InlineData(GgmlType.Q4_1, 20)]
    [InlineData(GgmlType.Q5_0, 22)]
    [InlineData(GgmlType.Q5_1, 24)]
    [InlineData(GgmlType.Q8_0, 34)]
    [InlineData(GgmlType.Q2_K, 84)]
    [InlineData(GgmlType.Q3_K, 110)]
    [InlineData(GgmlType.Q4_K, 144)]
    [InlineData(GgmlType.Q5_K, 176)]
    [InlineData(GgmlType.Q6_K, 210)]
    public void BlockSizesMatchGgml(GgmlType type, int bytes) => Assert.Equal(bytes, GgmlTypeInfo.BlockBytes(type));

    [Fact]
    public void RowBytesRejectsPartialBlocks() => Assert.Throws<InvalidDataException>(() => GgmlTypeInfo.RowBytes(GgmlType.Q4_K, 896));
}
