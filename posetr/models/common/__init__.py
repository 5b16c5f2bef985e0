"""Parts several models share: ResNet backbone, position encodings, the deformable encoder layer, the
kernels registry (posetr ops or PyTorch references), batched Hungarian matching, the base model config."""
