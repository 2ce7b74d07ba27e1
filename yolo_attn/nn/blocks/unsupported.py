"""Names from Ultralytics' YAMLs that yolo-attn knows and does not build, each refused with its reason.

yolo-attn builds detectors. Ultralytics' other task heads, and RT-DETR (a transformer decoder trained with a
set-prediction loss: another project), are refused by name with one line that says what they are, rather than
as unknown blocks.
"""

from yolo_attn.nn.registry import refuse

refuse("Segment", "Segment26", "Proto", "Proto26", "YOLOESegment", "YOLOESegment26", "SemanticSegment",
       reason="segmentation heads are not supported (yolo-attn builds detection models only)")
refuse("Pose", "Pose26", "RealNVP", reason="pose-estimation heads are not supported (yolo-attn builds detection "
       "models only)")
refuse("OBB", "OBB26", reason="oriented-box (OBB) heads are not supported (yolo-attn builds detection models only)")
refuse("Classify", reason="classification heads are not supported (yolo-attn builds detection models only)")
refuse("Depth", reason="depth-estimation heads are not supported (yolo-attn builds detection models only)")
refuse("WorldDetect", "YOLOEDetect", "LRPCHead", "C2fAttn", "ImagePoolingAttn", "SAVPE", "ContrastiveHead",
       "BNContrastiveHead", "MaxSigmoidAttnBlock",
       reason="open-vocabulary detection (YOLO-World, YOLOE) is not supported: it needs a text encoder")
refuse("RTDETRDecoder", "HGStem", "HGBlock", "ResNetLayer", "AIFI", "TransformerEncoderLayer", "MSDeformAttn",
       "DeformableTransformerDecoder",
       reason="RT-DETR is out of scope: a transformer decoder trained with a set-prediction loss is another project")
