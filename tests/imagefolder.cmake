# JPEG image folders, resizing, the ImageNet augmentation, the prefetching
# loader and --data detection (include()d from tests/CMakeLists.txt).
# `test_imagefolder --bench` measures decode + augment throughput instead.
add_executable(test_imagefolder test_imagefolder.c fake_model.c)
target_link_libraries(test_imagefolder PRIVATE rnrt PkgConfig::CHECK PkgConfig::JPEG)
add_test(NAME imagefolder COMMAND test_imagefolder)
set_tests_properties(imagefolder PROPERTIES
  ENVIRONMENT "RNC_JPEG_SAMPLE_DIR=${RNC_DATA_DIR}/cifar10-jpg-sample;RNC_CIFAR_DIR=${RNC_DATA_DIR}/cifar10;OMP_WAIT_POLICY=passive"
  WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})

# One training step of ImageNet ResNet-18 (batch 2, a 10-way classifier) fed
# from the JPEG sample: the 32x32 images go through the paper's scale
# augmentation up to 224x224.
rnc_add_network(resnet18_10 ${CMAKE_CURRENT_SOURCE_DIR}/specs/resnet18_10.spec)
add_test(NAME resnet18_jpeg_step
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/expect.sh 0 "final: train loss [0-9]" --not "nan|inf|error" --
                 $<TARGET_FILE:resnet18_10> train --data ${RNC_DATA_DIR}/cifar10-jpg-sample --steps 1 --val 10 --seed 3)
set_tests_properties(resnet18_jpeg_step PROPERTIES
  ENVIRONMENT "XDG_CACHE_HOME=${CMAKE_CURRENT_BINARY_DIR}/cache")
