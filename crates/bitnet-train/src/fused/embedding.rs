//! The fused embedding lookup: rows of the table gathered by token id, and the backward as one
//! scatter-add of the output gradient into a table-shaped gradient (the composed twin is candle's
//! `index_select`, whose backward builds it through `index_add`).

use super::{f32_data, tensor, u32_data, CpuF32};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

#[derive(Debug, Clone, Copy, Default)]
pub struct EmbeddingOp;

impl CustomOp2 for EmbeddingOp {
    fn name(&self) -> &'static str {
        "embedding"
    }

    /// `s1`: the table `[vocab, hidden]`; `s2`: ids (u32, any shape) → `[..ids, hidden]`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (vocab, h) = l1.shape().dims2()?;
        let (w, ids) = (f32_data(s1, l1, "embedding")?, u32_data(s2, l2, "token ids")?);
        let mut out = Vec::with_capacity(ids.len() * h);
        for &id in ids {
            if id as usize >= vocab {
                candle_core::bail!("embedding: token id {id} outside the vocabulary {vocab}");
            }
            out.extend_from_slice(&w[id as usize * h..][..h]);
        }
        let mut shape = l2.shape().dims().to_vec();
        shape.push(h);
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        w: &Tensor,
        ids: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (vocab, h) = w.dims2()?;
        let ids = ids.flatten_all()?.to_vec1::<u32>()?;
        let dy = dy.contiguous()?;
        let view = CpuF32::new(&dy)?;
        let mut dw = vec![0f32; vocab * h];
        for (&id, g) in ids.iter().zip(view.get().chunks_exact(h)) {
            super::axpy(1.0, g, &mut dw[id as usize * h..][..h]);
        }
        Ok((Some(tensor(dw, (vocab, h))?), None))
    }
}
