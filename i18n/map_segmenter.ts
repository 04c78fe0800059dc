<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1">
<context>
    <name>@default</name>
    <message>
        <location filename="../algorithms/map_input.py" line="81"/>
        <source>Drawing layer &apos;{layer}&apos; over this extent at {size:g} units per pixel makes a raster of {w} x {h} px ({gpix:.1f} GPix), more than {limit} GPix. Choose a smaller area or a pixel size of at least {suggest:.3g} (about 100 MPix).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/map_input.py" line="102"/>
        <source>This would download about {} tiles from tile.openstreetmap.org, which its usage policy forbids (bulk downloading). Choose a smaller area or a coarser pixel size.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/map_input.py" line="130"/>
        <source>Drawing layer &apos;{}&apos; into {} x {} px ({} tiles of {} px)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/map_input.py" line="135"/>
        <source>Cancelled by the user; no output was written.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/map_input.py" line="162"/>
        <source> The renderer reported: {}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/map_input.py" line="163"/>
        <source>Layer &apos;{}&apos; drew nothing over this extent: the server may be unreachable, or the layer has no data there.{}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/map_input.py" line="167"/>
        <source>While drawing layer &apos;{}&apos;: {}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/map_input.py" line="69"/>
        <source>Layer &apos;{}&apos; has no extent of its own to segment (a tile service covers the world): choose the area with Area to segment ({extent}).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/map_input.py" line="73"/>
        <source>Layer &apos;{}&apos; has no pixel size of its own: set Pixel size ({pixel_size}) in its CRS units.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/map_input.py" line="176"/>
        <source>The {mask} {} holds {} geometries; a mask must be polygons (only pixels inside them are segmented). Choose a polygon layer.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/map_input.py" line="205"/>
        <source>The {mask} {} holds no polygons: nothing would be segmented.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>BlurAlgorithm</name>
    <message>
        <location filename="../algorithms/blur.py" line="17"/>
        <source>Smooth segments (blur)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="18"/>
        <source>Smooths a segmentation by a majority or Gaussian vote of each pixel&apos;s neighbourhood.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="42"/>
        <source>A label raster, e.g. the Segments of K-Means segmentation.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="45"/>
        <source>Method</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="45"/>
        <source>Majority</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="45"/>
        <source>Gaussian-weighted majority</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="45"/>
        <source>Majority: every pixel of the window counts the same. Gaussian-weighted: near pixels count more (rounder boundaries).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="50"/>
        <source>Strength</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="50"/>
        <source>Low</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="50"/>
        <source>Medium</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="50"/>
        <source>High</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="50"/>
        <source>Size of the voting window; High also smooths twice.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="54"/>
        <source>Radius (px; 0 = use strength)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="54"/>
        <source>Window half-width in pixels, one pass, instead of Strength.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="56"/>
        <source>Iterations</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="56"/>
        <source>How many times the smoothing is repeated.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="42"/>
        <source>Smoothed segments</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/blur.py" line="19"/>
        <source>Smooths a segmentation: every pixel takes the segment that wins a vote of its neighbourhood. Removes speckle and small islands and straightens ragged boundaries, keeping segments, grid and style.

Segments: a label raster (one band of segment numbers, 0 = nodata), such as the result of K-Means segmentation or CNN segmentation. Nodata pixels stay nodata and do not vote.
Method: Majority counts each segment&apos;s pixels in a square window around the pixel (the classic majority filter); Gaussian weights near pixels more than far ones (rounder boundaries).
Strength: the size of the window, Low, Medium or High (High also runs twice). For segments made with 4 px blocks the windows are 5, 11 and 21 px wide; they grow with the block size the segments were made with.
Radius (advanced): window half-width in pixels, one pass, instead of Strength; 0 = use Strength. At most 200 (100 for Gaussian).
Iterations: how many times the smoothing is repeated; each repetition smooths further.
Memory budget (advanced): working memory; the result does not depend on it.
Dask scheduler (advanced): optional address of a Dask cluster&apos;s scheduler, e.g. tcp://10.0.0.5:8786; its workers process the windows, with the same result. Empty = this computer.

Ties: a pixel keeps its own segment when it is among the most voted; otherwise the lowest segment number among the most voted wins.

Smoothed segments: a label raster on the input&apos;s grid with the same segments, colours, names and metadata, so Latent KNN refinement and Render segments work on it as on the input.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>CnnAlgorithm</name>
    <message>
        <location filename="../algorithms/cnn.py" line="64"/>
        <source>CNN segmentation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="65"/>
        <source>Unsupervised segmentation into K kinds of region from CNN embeddings (ONNX Runtime).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="122"/>
        <source>Model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="125"/>
        <source>Other model file (.onnx, instead of Model)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="125"/>
        <source>Optional .onnx file used instead of Model (input &quot;rgb&quot;, output &quot;embeddings&quot;, metadata model_type &quot;embedding&quot;).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="131"/>
        <source>Device</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="131"/>
        <source>auto: CUDA (NVIDIA GPU), else CoreML (Apple), else CPU, whichever this ONNX Runtime offers. An unavailable device falls back to the CPU with a warning.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="137"/>
        <source>Tile size (px, 0 = model default)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="137"/>
        <source>Side of the tiles given to the network, overlap included; 0 = the size the model recommends.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="140"/>
        <source>Batch size (tiles)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="140"/>
        <source>Tiles per network call; larger batches can be faster on a GPU.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="142"/>
        <source>CPU threads (0 = all cores)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="116"/>
        <source>Segments</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="116"/>
        <source>Embeddings</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="116"/>
        <source>Optional: the network&apos;s embeddings (Float32, one band each, one pixel per 4 x 4 cell), the Features input of Latent KNN refinement.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="147"/>
        <source>ONNX Runtime execution provider used</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="142"/>
        <source>CPU threads for the network, each running it on tiles of its own; 0 = one per core.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="122"/>
        <source>Embedding network shipped with the plugin (its model card lies beside it in the plugin&apos;s onnx_models folder), or yours (user) from map_segmenter/models in the QGIS profile folder.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/cnn.py" line="66"/>
        <source>Divides a raster into K kinds of region (segments) using a convolutional network (CNN), without training data.

The network turns every 4 x 4 pixel cell into a vector describing its appearance and surroundings. K-Means finds K typical vectors on a sample spread over the whole raster, then every pixel joins the nearest one, with distances interpolated between cells so that boundaries are not blocky. The raster is processed in overlapping tiles, so there are no seams; the result does not depend on the tile size, batch size, threads or memory budget (except for networks with global attention, such as ViTs exported with training.export_backbone: their tiles are blended and the log warns that the result depends on the tile size).

Needs the Python package onnxruntime (the other Map Segmenter algorithms work without it). If it is missing, the algorithm stops and prints the command that installs it for the Python QGIS runs; nothing is installed automatically.

Input layer: any raster GDAL reads, 8-bit RGB expected (16-bit and float rasters are scaled from their 1st-99th percentiles); or any other map layer (an XYZ or WMS basemap, a vector layer...), which is first drawn with its style. Nodata and transparent pixels stay nodata.
Bands: the three bands to feed the network as red, green, blue; empty means the first three bands that are not alpha. A single band is fed three times.
Model: a network shipped with the plugin (each has a model card beside it in onnx_models), or one of yours, marked (user): .onnx files placed in the folder map_segmenter/models of your QGIS profile folder (Settings &gt; User Profiles &gt; Open Active Profile Folder), read when QGIS starts.
Other model file: an .onnx file used instead of Model; it must follow the Map Segmenter model contract (see the README).
Number of segments (K): how many kinds of region to find (2-254), or 0 (automatic): K is chosen between Smallest K and Largest K (advanced, 2 and 12) by merging the most alike segments while a merge loses less than 4 % of the variance; the log shows that share for every K and the K chosen, the result&apos;s metadata keeps it, and Merge segments cuts the result to fewer segments later.
Device: where the network runs. auto: an NVIDIA GPU (CUDA) if this ONNX Runtime has it, else Apple&apos;s CoreML, else the CPU; cuda needs onnxruntime-gpu; coreml is for macOS. An unavailable device falls back to the CPU with a warning; the log names the device used.
Random seed: the same seed gives the same result.
Reference segmentation: optional result of an earlier run with the same model; its segments are reused, so several rasters get the same segment for the same kind of surface.
Area to segment: optional extent; a raster file is cut on its own pixel grid. Required for web layers.
Pixel size for drawn layers: the pixel size web and vector layers are drawn at, in their CRS units; 0 = the layer&apos;s finest resolution (required for vector layers).
Mask polygons: optional; pixels outside them are nodata and take no part in the fit.
Smallest K, Largest K (advanced): the range the automatic choice considers.
Tile size, Batch size, CPU threads, Memory budget (advanced): how the work is cut up; they change speed and memory, never the result.
Dask scheduler (advanced): optional address of a Dask cluster&apos;s scheduler, e.g. tcp://10.0.0.5:8786; its workers run the network and process the windows, with the same result. Empty = this computer.

Segments: a label raster on the input&apos;s grid, segments 1..K ordered from dark to light, 0 = nodata, styled with one colour and name per segment.
Embeddings (optional): the network&apos;s vectors, one band each, one pixel per 4 x 4 cell, for Latent KNN refinement.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>EditShippedModelAction</name>
    <message>
        <location filename="../processing_provider/model_editing.py" line="23"/>
        <source>Edit a Copy in the Graphical Modeler…</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>KMeansAlgorithm</name>
    <message>
        <location filename="../algorithms/kmeans.py" line="13"/>
        <source>K-Means segmentation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/kmeans.py" line="14"/>
        <source>Unsupervised segmentation into K kinds of region by colour and texture.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/kmeans.py" line="56"/>
        <source>Block size (px)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/kmeans.py" line="56"/>
        <source>Side of the square blocks that are described and labelled: 4 = fine, 8 = medium, 16 = coarse.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/kmeans.py" line="51"/>
        <source>Segments</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/kmeans.py" line="51"/>
        <source>Block descriptors</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/kmeans.py" line="51"/>
        <source>Optional: the block descriptors (Float32, one band each, one pixel per block), the Features input of Latent KNN refinement.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/kmeans.py" line="15"/>
        <source>Divides a raster into K kinds of region (segments) of similar colour and texture, without training data.

The raster is cut into square blocks of Block size pixels. Each block is described by its mean colour and the spread of each band (texture), taken over the block and its eight neighbours. K-Means finds K typical descriptions on a sample spread over the whole raster, then every block joins the nearest one. Works on rasters of any size; the result does not depend on the memory budget.

Input layer: any raster GDAL reads (GeoTIFF, JPEG, VRT...), 8-bit, 16-bit or float; or any other map layer (an XYZ or WMS basemap, a vector layer...), which is first drawn with its style. Nodata and transparent pixels stay nodata.
Bands: the bands to segment; empty means the first three bands that are not alpha. Choose band 1 for a grey-scale raster, or pick e.g. the near-infrared band.
Number of segments (K): how many kinds of region to find (2-254), or 0 (automatic): K is chosen between Smallest K and Largest K (advanced, 2 and 12) by merging the most alike segments while a merge loses less than 4 % of the variance; the log shows that share for every K and the K chosen, the result&apos;s metadata keeps it, and Merge segments cuts the result to fewer segments later.
Block size: side of a block in pixels. 4 gives fine detail, 8 medium, 16 coarse and fast.
Random seed: the same seed gives the same result.
Reference segmentation: optional result of an earlier run; its segments are reused, so several rasters get the same segment for the same kind of surface.
Area to segment: optional extent; a raster file is cut on its own pixel grid, so the result lines up pixel for pixel with a run over the whole raster. Required for web layers.
Pixel size for drawn layers: the pixel size web and vector layers are drawn at, in their CRS units; 0 = the layer&apos;s finest resolution (required for vector layers).
Mask polygons: optional; pixels outside them are nodata and take no part in the fit.
Smallest K, Largest K (advanced): the range the automatic choice considers.
Memory budget (advanced): working memory; large rasters are processed in windows that fit it.
Dask scheduler (advanced): optional address of a Dask cluster&apos;s scheduler, e.g. tcp://10.0.0.5:8786; its workers process the windows, with the same result. Empty = this computer.

Segments: a label raster on the input&apos;s grid, segments 1..K ordered from dark to light, 0 = nodata, styled with one colour and name per segment.
Block descriptors (optional): the descriptors, one band each, one pixel per block, for Latent KNN refinement.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>KnnRefineAlgorithm</name>
    <message>
        <location filename="../algorithms/knn_refine.py" line="16"/>
        <source>Latent KNN refinement</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="65"/>
        <source>A label raster, e.g. the Segments of K-Means segmentation (or their smoothed version).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="67"/>
        <source>Features (of the same segmentation run)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="67"/>
        <source>The Block descriptors or Embeddings output of the segmentation that made Segments.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="69"/>
        <source>Neighbours</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="71"/>
        <source>Temperature (relative)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="74"/>
        <source>Mix per iteration</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="76"/>
        <source>Iterations</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="78"/>
        <source>Spatial weight</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="81"/>
        <source>Random seed</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="81"/>
        <source>Seed of the index sample: the same seed gives the same result.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="83"/>
        <source>Index size (blocks)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="93"/>
        <source>Refined segments</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="17"/>
        <source>Cleans speckle and mislabelled blocks: segments spread between neighbouring blocks that look alike, not across image edges.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="69"/>
        <source>How many blocks around each block it is linked to (4, 8, 12, 20, 24...).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="71"/>
        <source>Softness of the scores from the distances to the segment centres, times the fitted temperature; higher = softer.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="74"/>
        <source>Share of the linked blocks in each step (0 = none; towards 1 = stronger cleaning).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="76"/>
        <source>Number of propagation steps; 0 keeps the segments.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="78"/>
        <source>Weight of the distance between linked blocks beside their likeness; 0 = likeness only.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="83"/>
        <source>Number of blocks sampled to calibrate the temperature and the features&apos; spread.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="86"/>
        <source>Formulation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="86"/>
        <source>Edge-aware propagation between neighbouring blocks</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="86"/>
        <source>Global KNN among sampled blocks (earlier method)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="86"/>
        <source>Edge-aware propagation (default), or the earlier global KNN in feature space.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/knn_refine.py" line="19"/>
        <source>Cleans a segmentation: every block (a cell of the Features grid) revises its segment from the blocks around it that look like it, so speckle and blocks near a decision boundary join the region they belong to, while boundaries along image edges stay. Boundaries are then drawn at pixel resolution.

Every block starts from calibrated scores for the segments: half from its distances to the segment centres (a softmax whose temperature is fitted on the index so that it predicts the segments of neighbouring blocks; uncertain near a decision boundary, sure elsewhere), half from the segments of its own pixels. Each block is linked to its nearest blocks on the map, and a link counts more the more alike the two blocks look (features and position). Iterations times, every block&apos;s scores become 1 - Mix of its starting scores plus Mix times the weighted mean of its linked blocks&apos; scores (label propagation: each step reaches one ring of blocks further and the scores converge as steps are added). Each pixel finally takes the segment with the highest score interpolated between the four blocks around it. The result does not depend on the memory budget.

Measured on 54 labelled aerial tiles (5 classes): +1.6 mIoU points over K-Means segments and +1.1 over CNN segments, with two thirds (K-Means) or half (CNN) fewer fragments. Smooth segments at Medium before it adds nothing measurable; at High the two together measured best.

Segments: a label raster (segments 1..K, 0 = nodata), e.g. the Segments of K-Means segmentation. Segment centres are read from its metadata, or computed from the features when it has none.
Features: the Block descriptors (K-Means) or Embeddings (CNN) saved by the same segmentation run. They must cover the same area in the same CRS.
Neighbours: how many blocks around each block it is linked to: 4, 8 (the 3 x 3 ring), 12, 20, 24 (5 x 5)... (other values are rounded up to a whole ring). More reach further per iteration and cost more.
Temperature (relative): softness of the scores from the distances to the segment centres, as a multiple of the fitted temperature (1 = calibrated; higher = less sure).
Mix per iteration: the share of the linked blocks in each step (0 = none: only the pixels&apos; interpolation changes; towards 1 = stronger cleaning over larger areas).
Iterations: number of propagation steps (0 keeps the segments exactly as they are). Each step reaches one more ring of Neighbours and costs about as much as the rest of the run.
Spatial weight: how much the distance between linked blocks (in blocks) counts beside their likeness; 0 = likeness only, higher = the nearest linked blocks count more.
Random seed: seed of the index sample; the same seed gives the same result.
Index size (advanced): number of blocks sampled over the whole raster to calibrate the temperature and the features&apos; spread.
Formulation (advanced): the edge-aware propagation above, or the earlier global KNN: each block averages the scores of its Neighbours nearest sampled blocks in feature space (plus position, Spatial weight in raster units), Iterations times; slower, and it changes few pixels (use Temperature 2, Mix 0.65, Iterations 2, Spatial weight 0.08, Index size 120000 for its original settings).
Memory budget (advanced): working memory for the windows the raster is processed in.
Dask scheduler (advanced): optional address of a Dask cluster&apos;s scheduler, e.g. tcp://10.0.0.5:8786; its workers process the windows, with the same result. Empty = this computer.

Refined segments: a label raster on the input&apos;s grid with the same segments, colours and names. Nodata stays nodata; blocks without features keep their segments.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>MapSegmenterPlugin</name>
    <message>
        <location filename="../processing_provider/plugin.py" line="63"/>
        <source>Edit a Copy of “{}” in the Graphical Modeler…</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>MergeAlgorithm</name>
    <message>
        <location filename="../algorithms/merge.py" line="13"/>
        <source>Merge segments (re-cut K)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/merge.py" line="14"/>
        <source>Cuts a segmentation to fewer segments, merging the most alike first, without running it again.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/merge.py" line="34"/>
        <source>A label raster made by K-Means segmentation or CNN segmentation (or a step after them).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/merge.py" line="38"/>
        <source>Number of segments</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/merge.py" line="38"/>
        <source>How many segments to keep: 2 to the input&apos;s K.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/merge.py" line="34"/>
        <source>Merged segments</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/merge.py" line="16"/>
        <source>Cuts a segmentation to fewer kinds of region without segmenting again: the segments merge in the order of the merge tree the segmentation wrote (Ward&apos;s linkage on its segment centres, weighted by their sizes: the two most alike segments merge first). Fast: a lookup table applied to the raster window by window.

Segments: a label raster written by K-Means segmentation or CNN segmentation (or smoothed, refined or merged after them: they keep the tree).
Number of segments: how many segments to keep, from 2 to the input&apos;s K. Cutting a merged result again gives the same as cutting the original.
Memory budget (advanced): working memory; the result does not depend on it.
Dask scheduler (advanced): optional address of a Dask cluster&apos;s scheduler, e.g. tcp://10.0.0.5:8786; its workers process the windows, with the same result. Empty = this computer.

Merged segments: a label raster on the input&apos;s grid, segments 1..K ordered by their darkest member, styled, with the merged centres and the rest of the tree in its metadata, so it chains into Smooth segments, Latent KNN refinement, Render segments and Segment statistics.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>RenderAlgorithm</name>
    <message>
        <location filename="../algorithms/render.py" line="40"/>
        <source>Render segments</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="41"/>
        <source>Colours, segment names and style; an RGBA composite over the imagery and a PNG quicklook.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="67"/>
        <source>A label raster, e.g. the result of K-Means segmentation.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="70"/>
        <source>Distinct colours</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="70"/>
        <source>Segment mean colour (needs Image)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="71"/>
        <source>Colour ramp (viridis)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="72"/>
        <source>Palette</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="72"/>
        <source>How segments are coloured.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="74"/>
        <source>Segment names (comma-separated)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="74"/>
        <source>Names in segment order, e.g. water, trees, roofs. Use semicolons when a name holds a comma.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="78"/>
        <source>Image (for mean colour and composite)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="78"/>
        <source>The raster the segments were made from.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="81"/>
        <source>Composite opacity</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="81"/>
        <source>Opacity of the segment colours over the image (0 = image only, 1 = colours only).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="67"/>
        <source>Styled segments</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="86"/>
        <source>Composite (RGBA)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="86"/>
        <source>Segment colours blended over Image, for export and web maps.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="89"/>
        <source>Quicklook</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="89"/>
        <source>PNG files (*.png)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="89"/>
        <source>A PNG picture of the segment colours, at most 1024 px on its longer side.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/render.py" line="42"/>
        <source>Styles a segmentation for maps and export.

Segments: a label raster (segments 1..K, 0 = nodata), e.g. the result of K-Means segmentation, Smooth segments or Latent KNN refinement.
Palette: Distinct colours (up to 24 hand-picked colours, then evenly spread hues); Segment mean colour (each segment takes the mean colour of its pixels in Image, so the map looks like the image); Colour ramp (viridis, from segment 1, the darkest, to K).
Segment names: optional names in segment order, separated by commas, or by semicolons when a name holds a comma (default Segment 1 .. Segment K).
Image: the raster the segments were made from (same grid); needed for the mean-colour palette and the composite.
Composite opacity: opacity of the segment colours in the composite (0 = imagery only, 1 = colours only).
Memory budget (advanced): working memory; the result does not depend on it.
Dask scheduler (advanced): optional address of a Dask cluster&apos;s scheduler, e.g. tcp://10.0.0.5:8786; its workers process the windows (reading Segments and Image themselves), with the same result. Empty = this computer.

Styled segments: the segments with the palette as colour table and the names in their metadata; they load styled in QGIS.
Composite (optional): RGBA GeoTIFF of the segment colours blended over Image, transparent on nodata, for export and web maps.
Quicklook (optional): PNG of the segment colours, at most 1024 px on its longer side.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>SegmenterAlgorithm</name>
    <message>
        <location filename="../processing_provider/shipped_models.py" line="30"/>
        <source>Segmentation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="113"/>
        <source>Post-processing</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="221"/>
        <source>Bands (default: first three)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="221"/>
        <source>Bands to segment. Empty: the first three bands that are not alpha. Needed for a grey-scale raster (choose band 1).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="240"/>
        <source>Random seed</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="240"/>
        <source>Seed of the sample and of the initialisation: the same seed gives the same result.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="243"/>
        <source>Reference segmentation (reuse its centres)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="243"/>
        <source>Optional: a segmentation made earlier by this algorithm. Its segment centres are reused instead of fitting new ones, so several rasters get the same segment for the same kind of surface.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="266"/>
        <source>Memory budget (MB)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="266"/>
        <source>Working memory to use. The raster is processed in windows that fit it; the result does not depend on it.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="297"/>
        <source>Label raster on the input&apos;s grid: segment 1..K, 0 = nodata, styled with one colour and name per segment.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="300"/>
        <source>Number of segments produced</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="335"/>
        <source>{label}: layer &apos;{layer}&apos; is not a file GDAL can read ({provider}). Save it as a GeoTIFF first (Raster &gt; Conversion &gt; Translate).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="342"/>
        <source>{label}: no raster given.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="216"/>
        <source>Input layer</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="216"/>
        <source>The layer to segment: a raster GDAL reads (GeoTIFF, JPEG, VRT...; 8-bit, 16-bit or float), or any other map layer (XYZ or WMS basemap, vector layer...), which is drawn with its style over Area to segment at Pixel size first. Nodata and transparent pixels stay nodata.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="250"/>
        <source>Area to segment</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="250"/>
        <source>Optional: segment only this area. A raster file is cut on its own pixel grid, so the result lines up pixel for pixel with a run over the whole raster. Required for web layers (a tile service covers the world).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="254"/>
        <source>Pixel size for drawn layers (0 = native)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="254"/>
        <source>For layers that are drawn first (web and vector layers): the size of a pixel in the layer&apos;s CRS units. 0 = the layer&apos;s own finest resolution (a tile service&apos;s deepest zoom); required for vector layers. Raster files keep their own pixels.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="259"/>
        <source>Mask polygons</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="259"/>
        <source>Optional: only pixels inside these polygons are segmented; the others are nodata in every output and take no part in the fit.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="379"/>
        <source>Input layer: no layer given, or it cannot be opened.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="391"/>
        <source>Bands is ignored for a drawn layer: its red, green and blue are used.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="272"/>
        <source>Dask scheduler (empty = this computer)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="274"/>
        <source>Optional: the address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786, to process the windows on its workers; empty runs here, as always. The result is the same. The workers must read the input under the same path (a shared folder, or /vsis3/...) and run the same Map Segmenter version; this computer writes the output.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="227"/>
        <source>Number of segments (K; 0 = automatic)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="227"/>
        <source>How many kinds of region to find (2-254), or 0 to let the raster choose K between Smallest K and Largest K: the log shows the criterion for every K and the K chosen.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="232"/>
        <source>Smallest K (automatic)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="232"/>
        <source>With Number of segments 0: the smallest K the automatic choice considers.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="235"/>
        <source>Largest K (automatic)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="235"/>
        <source>With Number of segments 0: the largest K the automatic choice considers. The result can be cut to fewer segments later with Merge segments.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/base.py" line="195"/>
        <source>Segments</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>SegmenterProvider</name>
    <message>
        <location filename="../processing_provider/provider.py" line="33"/>
        <source>Map Segmenter (unsupervised raster segmentation)</source>
        <translation type="unfinished"></translation>
    </message>
</context>
<context>
    <name>StatisticsAlgorithm</name>
    <message>
        <location filename="../algorithms/statistics.py" line="25"/>
        <source>Segment statistics and polygons</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="26"/>
        <source>How much of the area each segment covers, its mean colour, the segments as polygons and a chart.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="54"/>
        <source>A label raster, e.g. the result of K-Means segmentation, or any one-band integer raster with a nodata value.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="56"/>
        <source>Image (for colour statistics)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="56"/>
        <source>Optional raster on the grid of the segments; the table gives each band&apos;s mean and standard deviation per segment.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="60"/>
        <source>Merge polygons smaller than (px; 0 = keep all)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="60"/>
        <source>Simplifies the polygons: regions smaller than this many pixels merge into their largest neighbour first, so boundaries stay shared (no gaps or overlaps). The table is not affected.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="65"/>
        <source>Segment statistics</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="65"/>
        <source>Table without geometry (.gpkg or .csv): one row per segment with pixels, areas, share and image statistics.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="69"/>
        <source>Segment polygons</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="69"/>
        <source>The segments as polygons (GeoPackage) with segment, name and area, styled with the segments&apos; colours.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="74"/>
        <source>Report</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="74"/>
        <source>HTML files (*.html)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="74"/>
        <source>An HTML page with a bar chart of each segment&apos;s area in its colour, and the table.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="77"/>
        <source>Number of segments present</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../algorithms/statistics.py" line="28"/>
        <source>Measures a segmentation: one table row per segment present, the segments as polygons for editing and overlays, and a report with a chart. Nodata pixels are left out everywhere.

Segments: a label raster, e.g. the result of K-Means segmentation, Smooth segments or Render segments, or any one-band integer raster (a classification) with a nodata value.
Image: optional raster on the same grid, e.g. the one the segments were made from; the table then gives the mean and standard deviation of each of its bands over each segment.
Merge polygons smaller than: optional simplification of the polygons only, in pixels. Regions smaller than this merge into their largest neighbour before the polygons are made (GDAL's sieve), so neighbouring polygons still share their boundaries exactly, without gaps or overlaps. 0 keeps every region; the table always counts the raster as it is.
Memory budget (advanced): working memory; the result does not depend on it.
Dask scheduler (advanced): optional address of a Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786; its workers count the windows (reading Segments and Image themselves), with the same table. Empty = this computer.

Segment statistics: a table without geometry, GeoPackage or CSV: segment number, name, colour, pixel count, area, share of the valid area in %, and the image statistics. Areas are the pixel count times the pixel's area: in m², ha and km² when the CRS is projected in metres (other units: map units² and m²); for a geographic CRS (degrees) the area on the ellipsoid, in fields ending in _ellipsoidal.
Segment polygons (optional): a GeoPackage of the segments as polygons in the raster's CRS, with segment, name and area; it loads coloured and named like the segments.
Report (optional): an HTML page with a bar chart of the area of each segment in its colour, and the table.</source>
        <translation type="unfinished"></translation>
    </message>
</context>
</TS>
